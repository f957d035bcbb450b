"""The hidden teacher model behind synthetic labels.

A logit = per-row biases (every table) + weighted dot products of per-row latent vectors for
several table pairs + a linear effect of the standardized dense features. Per-row parameters
live in tables of min(n, LATENT_SLOTS) slots; bigger tables share slots through a seeded
multiplicative hash of the id. Each component is scaled to a target standard deviation
(COMPONENT_STD) on a seeded pilot sample, then label ~ Bernoulli(sigmoid(logit + noise + b))
with b found by bisection on the pilot so that about POSITIVE_RATE of the labels are
positive. There are two weight sets; with drift the logit moves from set 0 to set 1:
logit = (1 - l) logit_0 + l logit_1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

SLOT_BITS = 16
LATENT_SLOTS = 1 << SLOT_BITS  # teacher parameter slots per table; bigger tables hash into them
LATENT_DIM = 8  # size of the teacher's per-row latent vectors
POSITIVE_RATE = 0.25  # calibrated share of positive labels
NOISE_STD = 0.5  # logit noise
COMPONENT_STD = {"bias": 1.3, "pairs": 1.1, "dense": 0.8}  # teacher logit parts, on the pilot


@dataclass
class Teacher:
    """The hidden model behind the labels; logit() is its noiseless logit incl. the offset."""

    slot_mult: list[int | None]  # per table: odd 64-bit hash multiplier, None = no hashing
    bias: list[list[np.ndarray]]  # [set][table] -> [slots] float32
    latent: dict[int, np.ndarray]  # table -> [slots, LATENT_DIM] float32
    pairs: np.ndarray  # [P, 2] table indices
    pair_weight: np.ndarray  # [2, P] float32
    dense_center: np.ndarray  # [F] float32
    dense_scale: np.ndarray  # [F] float32
    dense_weight: np.ndarray  # [2, F] float32
    offset: float = 0.0

    def slots(self, table: int, ids: np.ndarray) -> np.ndarray:
        """Parameter slot of each id: the id itself, or its top SLOT_BITS hash bits."""
        mult = self.slot_mult[table]
        if mult is None:
            return ids
        h = ids.astype(np.uint64) * np.uint64(mult)
        return (h >> np.uint64(64 - SLOT_BITS)).astype(np.intp)

    def parts(self, dense: np.ndarray, columns: Sequence[np.ndarray], weight_set: int) -> dict:
        """The three logit components under one weight set: name -> [n] float32."""
        slots = [self.slots(t, c) for t, c in enumerate(columns)]
        return {
            "bias": self._bias(slots, weight_set),
            "pairs": np.einsum("p,pn->n", self.pair_weight[weight_set], self._pair_dots(slots)),
            "dense": np.einsum("nf,f->n", self._dense_std(dense), self.dense_weight[weight_set]),
        }

    def logit(
        self, dense: np.ndarray, columns: Sequence[np.ndarray], lam: np.ndarray | None = None
    ) -> np.ndarray:
        """Noiseless logit [n] float32; lam [n] in [0, 1] mixes weight set 0 -> 1 (None: set 0)."""
        slots = [self.slots(t, c) for t, c in enumerate(columns)]
        dots, std = self._pair_dots(slots), self._dense_std(dense)
        out = []
        for w in (0, 1) if lam is not None else (0,):
            z = self._bias(slots, w)
            z += np.einsum("p,pn->n", self.pair_weight[w], dots)  # no BLAS: no thread pool
            z += np.einsum("nf,f->n", std, self.dense_weight[w])
            out.append(z)
        if lam is None:
            return out[0] + np.float32(self.offset)
        return out[0] + lam.astype(np.float32) * (out[1] - out[0]) + np.float32(self.offset)

    def _bias(self, slots: list[np.ndarray], weight_set: int) -> np.ndarray:
        z = np.zeros(len(slots[0]) if slots else 0, np.float32)
        for t, s in enumerate(slots):
            z += np.take(self.bias[weight_set][t], s)
        return z

    def _pair_dots(self, slots: list[np.ndarray]) -> np.ndarray:
        n = len(slots[0]) if slots else 0
        dots = np.empty((len(self.pairs), n), np.float32)  # [P, n]
        for p, (i, j) in enumerate(self.pairs):
            li = np.take(self.latent[i], slots[i], axis=0)  # [n, k]
            lj = np.take(self.latent[j], slots[j], axis=0)  # [n, k]
            np.einsum("nk,nk->n", li, lj, out=dots[p])
        return dots

    def _dense_std(self, dense: np.ndarray) -> np.ndarray:
        return (np.asarray(dense, np.float32) - self.dense_center) / self.dense_scale  # [n, F]


def make_teacher(rows: list[int], dense_pilot: np.ndarray, key: Sequence[int]) -> Teacher:
    """Seeded raw weights (not yet scaled): two weight sets, shared latent vectors.

    key is the SeedSequence entropy of the teacher's stream; table t draws from key + [t].
    """
    rng = np.random.default_rng(list(key))
    T, F = len(rows), dense_pilot.shape[1]
    eligible = [t for t, n in enumerate(rows) if n >= 3]  # at least two real rows
    candidates = list(combinations(eligible, 2))
    npairs = min(max(2, T // 2), len(candidates))
    chosen = rng.choice(len(candidates), npairs, replace=False) if npairs else []
    pairs = np.array([candidates[i] for i in sorted(chosen)], np.int64).reshape(-1, 2)
    mults = [int(rng.integers(0, 2**62)) * 2 + 1 if n > LATENT_SLOTS else None for n in rows]
    bias, latent, paired = [[], []], {}, set(pairs.ravel().tolist())
    for t, n in enumerate(rows):
        trng = np.random.default_rng([*key, t])
        slots = min(n, LATENT_SLOTS)
        for w in (0, 1):
            bias[w].append(trng.standard_normal(slots, np.float32))
        if t in paired:
            scale = np.float32(LATENT_DIM**-0.5)
            latent[t] = trng.standard_normal((slots, LATENT_DIM), np.float32) * scale
    mask = rng.random(F) < 0.6
    mask[rng.integers(F)] = True  # at least one dense feature matters
    return Teacher(
        slot_mult=mults,
        bias=bias,
        latent=latent,
        pairs=pairs,
        pair_weight=rng.standard_normal((2, len(pairs))).astype(np.float32),
        dense_center=dense_pilot.mean(0).astype(np.float32),
        dense_scale=np.maximum(dense_pilot.std(0), 1e-3).astype(np.float32),
        dense_weight=(rng.standard_normal((2, F)) * mask).astype(np.float32),
    )


def calibrate(
    teacher: Teacher, dense: np.ndarray, ids: np.ndarray, lam: np.ndarray | None, noise: np.ndarray
) -> None:
    """Scale each logit component to COMPONENT_STD on the pilot, then solve the offset."""
    for w in (0, 1):
        parts = teacher.parts(dense, ids, w)
        for name, values in parts.items():
            std = float(values.std())
            f = np.float32(COMPONENT_STD[name] / std) if std > 1e-6 else np.float32(1.0)
            if name == "bias":
                teacher.bias[w] = [b * f for b in teacher.bias[w]]
            elif name == "pairs":
                teacher.pair_weight[w] *= f
            else:
                teacher.dense_weight[w] *= f
    z = teacher.logit(dense, ids, lam).astype(np.float64) + noise
    lo, hi = -40.0, 40.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        rate = float(np.mean(1.0 / (1.0 + np.exp(-(z + mid)))))
        lo, hi = (mid, hi) if rate < POSITIVE_RATE else (lo, mid)
    teacher.offset = 0.5 * (lo + hi)


def describe() -> str:
    """One-paragraph description of the teacher for a dataset's meta.json."""
    return (
        "logit = per-row biases (all tables) + weighted dot products of per-row latent "
        f"vectors (dim {LATENT_DIM}) for table pairs + linear effect of standardized dense "
        f"features + N(0, {NOISE_STD}^2) noise + offset; per-row parameters in "
        f"min(rows, {LATENT_SLOTS}) slots per table (hashed beyond); with drift the logit "
        "moves from weight set 0 to 1 across days; label ~ Bernoulli(sigmoid(logit))"
    )
