"""Power-law row popularity for synthetic embedding tables.

A table of n ids has n - 1 real rows (ids 1..n-1; id 0 means missing and takes a small
seeded per-table share, MISSING_RATE). Real rows are drawn by popularity rank from a
discretized power law: rank r (0-based) has probability proportional to
(r+1)^(1-a) - (r+2)^(1-a) (the mass of x^-a on [r+1, r+2)), sampled exactly by inverting its
CDF in closed form. The exponent a is the smallest one in [MIN_EXPONENT, MAX_EXPONENT] that
makes the most popular row >= 10,000x as likely as the median row (as FAE reports for
Criteo); tables of fewer than ~280 rows cannot reach that with a sensible exponent and get
MAX_EXPONENT = 2 (the top row then takes about half of the table's lookups; more would make
the feature almost constant). Ranks map to ids through a seeded per-table permutation, and
with drift that mapping rotates by a number of ranks that grows day by day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TARGET_TOP_MEDIAN = 1.01e4  # exponent solved for this top/median ratio (>= 10,000x)
MIN_EXPONENT = 1.05  # big tables: top 1% of rows take ~65-80% of the lookups
MAX_EXPONENT = 2.0  # small tables: the top row takes ~half of the lookups
MISSING_RATE = (0.01, 0.03)  # per-table share of id 0, drawn uniformly from this range


def _rank_weights(ranks: np.ndarray, exponent: float) -> np.ndarray:
    """Unnormalized (r+1)^q - (r+2)^q, q = 1 - a, computed without cancellation."""
    q = 1.0 - exponent
    r1 = np.asarray(ranks, dtype=np.float64) + 1.0
    return np.abs(r1**q * np.expm1(q * np.log1p(1.0 / r1)))


def top_median_ratio(rows: int, exponent: float) -> float:
    """Expected lookups of the most popular real row over those of the median real row."""
    m = rows - 1
    if m < 1:
        return 1.0
    middle = np.array([(m - 1) // 2]) if m % 2 else np.array([m // 2 - 1, m // 2])
    return float(_rank_weights(np.array([0]), exponent)[0] / _rank_weights(middle, exponent).mean())


def popularity_exponent(rows: int) -> float:
    """Smallest exponent in [MIN_EXPONENT, MAX_EXPONENT] giving top/median >= TARGET_TOP_MEDIAN."""
    lo, hi = MIN_EXPONENT, MAX_EXPONENT
    if top_median_ratio(rows, lo) >= TARGET_TOP_MEDIAN:
        return lo
    if top_median_ratio(rows, hi) < TARGET_TOP_MEDIAN:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if top_median_ratio(rows, mid) < TARGET_TOP_MEDIAN else (lo, mid)
    return hi


def expected_access_probabilities(rows: int, exponent: float | None = None) -> np.ndarray:
    """Expected share of a table's non-missing lookups per popularity rank.

    Index r is rank r (0 = most popular) among the rows - 1 real ids; the entries sum to 1.
    A generated table maps rank r to id perm[r] + 1, and id 0 (missing) takes its own share.
    """
    m = rows - 1
    a = popularity_exponent(rows) if exponent is None else exponent
    if m < 1:
        return np.zeros(0)
    q = 1.0 - a
    return _rank_weights(np.arange(m), a) / abs(1.0 - float(m + 1) ** q)


@dataclass
class TableSampler:
    """Draws one table's ids from uniforms: missing share, power-law rank, permutation, drift."""

    rows: int
    exponent: float
    missing_rate: float
    lookup: np.ndarray  # [rows]: lookup[0] = 0 (missing), lookup[1 + rank] = id of that rank
    shift: np.ndarray  # [days] int64: rank rotation per day

    def ids(self, u: np.ndarray, day: np.ndarray | None) -> np.ndarray:
        """u [n] float64 uniforms in [0, 1) (overwritten), day [n] or None -> ids [n].

        u < missing_rate gives id 0; the rest is rescaled to [0, 1) and mapped through the
        inverse CDF x = (1 - v (1 - (m+1)^q))^(1/q) on [1, m + 1), whose floor is 1 + rank.
        """
        m = self.rows - 1
        q = 1.0 - self.exponent
        u -= self.missing_rate  # below 0 for missing lookups: x < 1, floor 0
        u *= (float(m + 1) ** q - 1.0) / (1.0 - self.missing_rate)
        np.log1p(u, out=u)
        u *= 1.0 / q
        np.exp(u, out=u)
        rank1 = u.astype(np.int64)  # 0 = missing, else 1 + rank
        np.minimum(rank1, m, out=rank1)
        if day is not None:  # rotate ranks by the day's shift; missing stays 0
            rotated = (rank1 - 1 + self.shift[day]) % m + 1
            rank1 = np.where(rank1 > 0, rotated, 0)
        return np.take(self.lookup, rank1)


def make_sampler(rows: int, rng: np.random.Generator, days: int, drift: float) -> TableSampler:
    """A seeded sampler for a table of `rows` ids (incl. id 0) over `days` days.

    With drift > 0 the rank -> id mapping rotates by ceil(drift * day * step) ranks on each
    day, step = min(sqrt(n - 1), (n - 2) / (days - 1)): yesterday's warm rows become today's
    hot ones, and the last day never wraps around to day 0's mapping.
    """
    m = rows - 1
    missing = float(rng.uniform(*MISSING_RATE))
    lookup = np.zeros(rows, np.int32 if rows < 2**31 else np.int64)
    lookup[1:] = rng.permutation(m) + 1
    step = min(math.sqrt(m), (m - 1) / (days - 1))  # the last day stays short of a full turn
    steps = np.ceil(drift * np.arange(days) * step) if drift > 0 else np.zeros(days)
    return TableSampler(rows, popularity_exponent(rows), missing, lookup, steps.astype(np.int64))
