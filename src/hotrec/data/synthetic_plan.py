"""The plan of a synthetic dataset: profiles, options, samplers, dense model, teacher.

Everything that defines the output is built deterministically from the validated options:
one power-law sampler per table (hotrec.data.powerlaw), a dense feature model, and a teacher
(hotrec.data.teacher) calibrated on a seeded pilot sample. `Plan.block(i)` then makes the
rows of internal block i.

Dense features are count-like values floor(exp(mu + sigma z)) - 1 clipped at 0, z standard
logistic scaled to unit variance (a rounded log-logistic, close to a rounded lognormal but
cheaper to draw; many zeros for small mu), stored as log1p(count) float32.

Rows are cut into `days` equal consecutive days. Randomness comes from numpy SeedSequences
keyed by (seed, stream, index): every block of BLOCK_ROWS rows has its own generator, so the
output depends on the seed and the options but not on chunk_rows or on the number of threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hotrec.data.format import sparse_dtype_for
from hotrec.data.powerlaw import TableSampler, make_sampler
from hotrec.data.teacher import NOISE_STD, Teacher, calibrate, make_teacher
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec

BLOCK_ROWS = 1 << 16  # rows per internal block: the unit of randomness
PILOT_ROWS = 1 << 16  # rows of the calibration sample

_TABLES, _DENSE, _PILOT, _TEACHER, _ROWS = range(5)  # seed streams


@dataclass(frozen=True)
class Profile:
    """A schema to imitate: dense feature count, table cardinalities (incl. id 0), default rows."""

    num_dense: int
    cardinalities: tuple[int, ...]
    rows: int


KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194,
    27, 14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)  # fmt: skip
TERABYTE_CARDINALITIES = (
    39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346,
    10, 2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36,
)  # fmt: skip

PROFILES: dict[str, Profile] = {
    "tiny": Profile(4, (10, 40, 200, 1_000, 5_000, 3_000, 500, 100), 20_000),
    "criteo-kaggle": Profile(13, KAGGLE_CARDINALITIES, 45_840_617),
    "criteo-terabyte": Profile(13, TERABYTE_CARDINALITIES, 4_373_472_329),
}


# ---------------------------------------------------------------- options


def resolve_cardinalities(
    profile: str, scale: float = 1.0, max_table_rows: int | None = None
) -> list[int]:
    """The profile's table rows times scale (at least 2), capped at max_table_rows."""
    rows = [max(2, int(round(c * scale))) for c in _profile(profile).cardinalities]
    return [min(n, max_table_rows) for n in rows] if max_table_rows else rows


def _profile(name: str) -> Profile:
    if name not in PROFILES:
        raise HotrecError(f"unknown synthetic profile {name!r} (choose from {', '.join(PROFILES)})")
    return PROFILES[name]


def _validate(rows: int, scale: float, max_table_rows, days: int, drift: float, seed: int) -> None:
    if days < 2:
        raise HotrecError(f"days must be >= 2 (the last day is val/test), got {days}")
    if rows < 2 * days:
        raise HotrecError(f"rows must be >= 2 x days = {2 * days}, got {rows}")
    if not scale > 0:
        raise HotrecError(f"scale must be > 0, got {scale}")
    if max_table_rows is not None and max_table_rows < 2:
        raise HotrecError(f"max_table_rows must be >= 2, got {max_table_rows}")
    if not 0.0 <= drift <= 1.0:
        raise HotrecError(f"drift must be within 0..1, got {drift}")
    if seed < 0:
        raise HotrecError(f"seed must be >= 0, got {seed}")


def resolve_options(
    profile: str, rows: int | None, scale: float, max_table_rows, days: int, drift: float, seed: int
) -> dict:
    """Validated options that determine the output, with the resolved rows and cardinalities."""
    prof = _profile(profile)
    rows = prof.rows if rows is None else int(rows)
    _validate(rows, scale, max_table_rows, days, drift, seed)
    return {
        "profile": profile,
        "rows": rows,
        "scale": scale,
        "max_table_rows": max_table_rows,
        "days": days,
        "drift": drift,
        "seed": seed,
        "cardinalities": resolve_cardinalities(profile, scale, max_table_rows),
    }


def schema_of(options: dict) -> Schema:
    """Dense features I1.., tables C1.. with the resolved cardinalities."""
    return Schema(
        dense_names=tuple(f"I{i + 1}" for i in range(_profile(options["profile"]).num_dense)),
        tables=tuple(TableSpec(f"C{t + 1}", n) for t, n in enumerate(options["cardinalities"])),
    )


# ---------------------------------------------------------------- dense features


@dataclass
class _DenseModel:
    """Rounded log-logistic counts per feature, returned as log1p(count) float32."""

    mu: np.ndarray  # [F] float32
    sigma: np.ndarray  # [F] float32

    def values(self, u: np.ndarray) -> np.ndarray:
        """u [n, F] float32 uniforms in [0, 1) -> log1p(counts) [n, F] float32."""
        np.maximum(u, np.float32(1e-7), out=u)
        z = np.log(u / (1.0 - u))  # standard logistic, std pi / sqrt(3)
        z *= np.float32(math.sqrt(3.0) / math.pi)
        counts = np.floor(np.exp(self.mu + self.sigma * z)) - 1.0
        np.maximum(counts, 0.0, out=counts)
        return np.log1p(counts, out=counts)


def _make_dense(num_dense: int, seed: int) -> _DenseModel:
    rng = np.random.default_rng([seed, _DENSE])
    mu = rng.uniform(-0.5, 4.0, num_dense).astype(np.float32)
    sigma = rng.uniform(0.7, 1.8, num_dense).astype(np.float32)
    return _DenseModel(mu, sigma)


# ---------------------------------------------------------------- plan


@dataclass
class Plan:
    """Everything that defines the output, built deterministically from the options."""

    options: dict
    schema: Schema
    day_starts: np.ndarray  # [days + 1] global row where each day starts
    lam: np.ndarray  # [days] float32 teacher mix per day
    samplers: list[TableSampler]
    dense: _DenseModel
    teacher: Teacher | None = None  # set once calibrated on the pilot

    @property
    def rows(self) -> int:
        return int(self.day_starts[-1])

    @property
    def drifting(self) -> bool:
        return self.options["drift"] > 0

    def days_of(self, start: int, stop: int) -> np.ndarray:
        """Day index [stop - start] of global rows start..stop-1."""
        return np.searchsorted(self.day_starts, np.arange(start, stop), side="right") - 1

    def features(self, rng: np.random.Generator, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dense [n, F] float32 and table-major ids [T, n] for the n rows of `days`."""
        n = len(days)
        u = rng.random((len(self.samplers), n))  # [T, n]
        day = days if self.drifting else None
        ids = np.empty((len(self.samplers), n), sparse_dtype_for(self.schema))  # [T, n]
        for t, s in enumerate(self.samplers):
            ids[t] = s.ids(u[t], day)
        dense = self.dense.values(rng.random((n, self.schema.num_dense), np.float32))
        return dense, ids

    def block(self, index: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Global start row, dense [n, F], table-major ids [T, n], label [n] of block `index`."""
        start = index * BLOCK_ROWS
        days = self.days_of(start, min(self.rows, start + BLOCK_ROWS))
        rng = np.random.default_rng([self.options["seed"], _ROWS, index])
        dense, columns = self.features(rng, days)
        lam = self.lam[days] if self.drifting else None
        z = self.teacher.logit(dense, columns, lam)
        z += np.float32(NOISE_STD) * rng.standard_normal(len(days), np.float32)
        p = 1.0 / (1.0 + np.exp(-z))
        label = (rng.random(len(days), np.float32) < p).astype(np.float32)
        return start, dense, columns, label


def make_plan(options: dict) -> Plan:
    """Samplers, dense model and a teacher calibrated on a seeded pilot sample."""
    rows, days, drift, seed = (options[k] for k in ("rows", "days", "drift", "seed"))
    card, schema = options["cardinalities"], schema_of(options)
    samplers = [
        make_sampler(n, np.random.default_rng([seed, _TABLES, t]), days, drift)
        for t, n in enumerate(card)
    ]
    dense = _make_dense(schema.num_dense, seed)
    day_starts = np.array([rows * d // days for d in range(days + 1)], np.int64)
    lam = (drift * np.arange(days) / (days - 1)).astype(np.float32)
    plan = Plan(options, schema, day_starts, lam, samplers, dense)
    prng = np.random.default_rng([seed, _PILOT])
    pilot_days = prng.integers(0, days, PILOT_ROWS)
    p_dense, p_columns = plan.features(prng, pilot_days)
    noise = NOISE_STD * prng.standard_normal(PILOT_ROWS)
    plan.teacher = make_teacher(card, p_dense, [seed, _TEACHER])
    calibrate(plan.teacher, p_dense, p_columns, lam[pilot_days] if drift > 0 else None, noise)
    return plan
