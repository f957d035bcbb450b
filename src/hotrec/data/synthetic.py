"""Seeded synthetic datasets with Criteo-like popularity skew and labels from a hidden teacher.

How one row is made (all of it vectorized over blocks of BLOCK_ROWS rows; details in the
modules named):

- Sparse ids (hotrec.data.powerlaw): per table, id 0 (missing) takes a seeded 1-3% share and
  the real rows are drawn by popularity rank from a discretized power law whose exponent makes
  the top row >= 10,000x as likely as the median row; ranks map to ids through a seeded
  permutation.
- Dense features (hotrec.data.synthetic_plan): rounded log-logistic counts, stored as
  log1p(count) float32.
- Labels (hotrec.data.teacher): a hidden teacher's logit (per-row biases, latent dot products
  for table pairs, a dense linear effect) plus noise, calibrated so that about POSITIVE_RATE of
  the labels are positive.
- Days: rows are cut into `days` equal consecutive days; days 0..days-2 are train, the last
  day's first half is val and the rest test (as the DLRM reference splits Criteo Kaggle).
  With drift > 0 the rank -> id mapping rotates a little more on each day (yesterday's warm
  rows become today's hot ones) and the teacher's logit moves from weight set 0 to weight
  set 1: logit = (1 - l) logit_0 + l logit_1, l = drift * day / (days - 1).

Randomness comes from numpy SeedSequences keyed by (seed, stream, index): every block of
BLOCK_ROWS rows has its own generator, so the output depends on the seed and the options but
not on chunk_rows or on the number of worker threads.

The public names of hotrec.data.powerlaw, hotrec.data.teacher and hotrec.data.synthetic_plan
are importable from here as well.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hotrec.data.bag_layout import require_one_hot
from hotrec.data.format import Dataset, DatasetWriter, SplitArrays, sparse_dtype_for
from hotrec.data.powerlaw import (
    MAX_EXPONENT,
    MIN_EXPONENT,
    MISSING_RATE,
    TARGET_TOP_MEDIAN,
    expected_access_probabilities,
    popularity_exponent,
    top_median_ratio,
)
from hotrec.data.synthetic_plan import (
    BLOCK_ROWS,
    KAGGLE_CARDINALITIES,
    PILOT_ROWS,
    PROFILES,
    TERABYTE_CARDINALITIES,
    Plan,
    Profile,
    make_plan,
    resolve_cardinalities,
    resolve_options,
    schema_of,
)
from hotrec.data.teacher import (
    COMPONENT_STD,
    LATENT_DIM,
    LATENT_SLOTS,
    NOISE_STD,
    POSITIVE_RATE,
    SLOT_BITS,
    Teacher,
    describe,
)
from hotrec.errors import HotrecError
from hotrec.progress import format_rate, make_progress
from hotrec.types import Schema

__all__ = [
    "BLOCK_ROWS",
    "COMPONENT_STD",
    "GENERATOR_VERSION",
    "KAGGLE_CARDINALITIES",
    "LATENT_DIM",
    "LATENT_SLOTS",
    "MAX_EXPONENT",
    "MIN_EXPONENT",
    "MISSING_RATE",
    "NOISE_STD",
    "PILOT_ROWS",
    "POSITIVE_RATE",
    "PROFILES",
    "SLOT_BITS",
    "TARGET_TOP_MEDIAN",
    "TERABYTE_CARDINALITIES",
    "Profile",
    "Teacher",
    "expected_access_probabilities",
    "popularity_exponent",
    "resolve_cardinalities",
    "synthesize",
    "teacher_logits",
    "top_median_ratio",
]

GENERATOR_VERSION = 1  # bump when the same options would give different bytes

_make_plan = make_plan  # the name tests and older callers use


# ---------------------------------------------------------------- splits and writing


def _split_layout(day_starts: np.ndarray) -> dict[str, tuple[int, int]]:
    """Global row range of each split: all days but the last train, last day halves val/test."""
    n, train_end = int(day_starts[-1]), int(day_starts[-2])
    val_end = train_end + (n - train_end) // 2
    return {"train": (0, train_end), "val": (train_end, val_end), "test": (val_end, n)}


def _days_meta(day_starts: np.ndarray, layout: dict) -> list[dict]:
    days = len(day_starts) - 1
    out = [
        {"day": d, "split": "train", "start": int(day_starts[d]), "stop": int(day_starts[d + 1])}
        for d in range(days - 1)
    ]
    for split in ("val", "test"):
        lo, hi = layout[split]
        out.append({"day": days - 1, "split": split, "start": 0, "stop": hi - lo})
    return out


def _write_block(arrays: dict[str, SplitArrays], layout: dict, block: tuple) -> float:
    """Copy one block into the split memmaps it overlaps; returns its number of positives."""
    start, dense, ids, label = block  # ids [T, n]
    stop = start + len(label)
    for split, (lo, hi) in layout.items():
        a, b = max(start, lo), min(stop, hi)
        if a < b:
            dst = arrays[split]
            dst.dense[a - lo : b - lo] = dense[a - start : b - start]
            dst.sparse[a - lo : b - lo] = ids[:, a - start : b - start].T  # [b - a, T]
            dst.label[a - lo : b - lo] = label[a - start : b - start]
    return float(label.sum())


def _check_space(out: Path, schema: Schema, rows: int) -> None:
    """Refuse early when the arrays cannot fit on the destination's file system."""
    row_bytes = 4 * schema.num_dense + sparse_dtype_for(schema).itemsize * schema.num_tables + 4
    need = rows * row_bytes
    where = Path(out).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        raise HotrecError(
            f"{rows:,} rows need {need / 1e9:.1f} GB but {where} has {free / 1e9:.1f} GB free "
            "(use fewer --rows)"
        )


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _checksum(options: dict) -> str:
    """sha256 of the options that determine the bytes, plus the generator version."""
    blob = json.dumps({**options, "generator_version": GENERATOR_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _teacher_meta(plan: Plan, positive_rate: float) -> dict:
    t = plan.teacher
    names = [s.name for s in plan.schema.tables]
    return {
        "description": describe(),
        "component_std": dict(COMPONENT_STD),
        "noise_std": NOISE_STD,
        "pairs": [[names[i], names[j]] for i, j in t.pairs],
        "dense_with_effect": [
            plan.schema.dense_names[f] for f in np.flatnonzero(np.any(t.dense_weight != 0, axis=0))
        ],
        "offset": t.offset,
        "target_positive_rate": POSITIVE_RATE,
        "positive_rate": positive_rate,
        "popularity_exponents": [round(s.exponent, 4) for s in plan.samplers],
        "missing_rates": [round(s.missing_rate, 4) for s in plan.samplers],
        "generator_version": GENERATOR_VERSION,
    }


def synthesize(
    out: Path,
    *,
    profile: str = "tiny",
    rows: int | None = None,
    scale: float = 1.0,
    max_table_rows: int | None = None,
    days: int = 7,
    drift: float = 0.0,
    seed: int = 0,
    overwrite: bool = False,
    chunk_rows: int = 1 << 18,
) -> Path:
    """Generate a seeded synthetic dataset directory; returns its committed path.

    Same options -> byte-identical arrays; chunk_rows only sets how many rows are generated
    between progress updates (rounded to whole internal blocks of BLOCK_ROWS rows).
    """
    if chunk_rows < 1:
        raise HotrecError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if Path(out).exists() and not overwrite:  # before the (for big profiles, slow) plan
        raise HotrecError(f"{out} already exists (use --overwrite to replace it)")
    opts = resolve_options(profile, rows, scale, max_table_rows, days, drift, seed)
    _check_space(out, schema_of(opts), opts["rows"])
    plan = make_plan(opts)
    layout = _split_layout(plan.day_starts)
    nblocks = -(-plan.rows // BLOCK_ROWS)
    per_chunk = max(1, chunk_rows // BLOCK_ROWS)
    positives, done, t0 = 0.0, 0, time.perf_counter()
    with DatasetWriter(out, overwrite) as writer:
        arrays = {s: writer.create_split(s, hi - lo, plan.schema) for s, (lo, hi) in layout.items()}
        with ThreadPoolExecutor(_workers()) as pool, make_progress() as bar:
            task = bar.add_task("synthesize", total=plan.rows, rate="", info=profile)

            def write(i: int) -> float:
                return _write_block(arrays, layout, plan.block(i))

            for first in range(0, nblocks, per_chunk):
                blocks = range(first, min(nblocks, first + per_chunk))
                positives += sum(pool.map(write, blocks))
                n = min(plan.rows, blocks.stop * BLOCK_ROWS) - first * BLOCK_ROWS
                done += n
                rate = format_rate(done, time.perf_counter() - t0, "rows")
                bar.update(task, advance=n, rate=rate, info=f"positives {positives / done:.1%}")
        options = {**plan.options, "overwrite": overwrite, "chunk_rows": chunk_rows}
        meta = {
            "source": "synthetic",
            "options": options,
            "input_checksum": _checksum(plan.options),
            "days": _days_meta(plan.day_starts, layout),
            "teacher": _teacher_meta(plan, positives / plan.rows),
        }
        return writer.commit(plan.schema, meta)


# ---------------------------------------------------------------- inspection


def teacher_logits(dataset: Dataset, split: str = "train") -> np.ndarray:
    """The hidden teacher's noiseless logits [n] float32 for a split of a synthetic dataset."""
    if dataset.meta.get("source") != "synthetic":
        raise HotrecError(f"{dataset.path} is not a synthetic dataset")
    require_one_hot(dataset.schema, "the synthetic teacher")  # it reads one id per table
    version = dataset.meta.get("teacher", {}).get("generator_version")
    if version != GENERATOR_VERSION:
        raise HotrecError(
            f"{dataset.path} was made by synthetic generator version {version}, "
            f"this is version {GENERATOR_VERSION}: its teacher cannot be rebuilt"
        )
    plan = make_plan(dataset.meta["options"])
    lo = _split_layout(plan.day_starts)[split][0]
    arrays = dataset.split(split)
    out = np.empty(len(arrays), np.float32)
    for a in range(0, len(arrays), BLOCK_ROWS):
        b = min(len(arrays), a + BLOCK_ROWS)
        columns = np.ascontiguousarray(arrays.sparse[a:b].T)  # [T, b - a]
        lam = plan.lam[plan.days_of(lo + a, lo + b)] if plan.drifting else None
        out[a:b] = plan.teacher.logit(np.asarray(arrays.dense[a:b]), columns, lam)
    return out
