"""Popularity profiling: FAE's knob is a device-memory byte budget.

The profiler counts lookups per global row (table_offset[t] + row, all tables in one fused
row space) over a seeded sample of whole blocks of inputs (default 5% of the rows), so a
memory-mapped split is read in a few long sequential slices. top_rows / row_ranks order rows
by count (ties broken by the lower global id), capacity_for turns a byte budget into a row
count, and hot_input_share_curve says, for many budgets in one pass, which share of the
sampled lookups and of the sampled inputs (all of their lookups hot) the hot set would cover.

The hot set itself, built from a fitted profiler, lives in hotrec.placement.hotset.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from hotrec.errors import HotrecError
from hotrec.placement.bytesize import format_bytes, parse_bytes
from hotrec.progress import format_rate, make_progress

__all__ = [
    "PopularityProfiler",
    "access_cdf",
    "format_bytes",
    "hot_input_share_curve",
    "parse_bytes",
    "row_ranks",
    "top_rows",
]

MAX_SHARE_INPUTS = 200_000  # sampled inputs kept (as global ids) to measure the hot-input share
MAX_SHARE_IDS = 1 << 24  # multi-hot: ids kept for it at most (inputs x the widest input)
PROGRESS_MIN_ROWS = 1 << 20  # a progress bar is shown when at least this many rows are sampled
NEVER = np.iinfo(np.int64).max  # rank of a row never seen: hot under no budget


class PopularityProfiler:
    """Sampled access counts per global embedding row.

    Parameters are stored as given; `fit` reads the sample and sets:
    counts_ (int64 [R]) lookups per global row in the sample; sampled_inputs_ (int) inputs
    counted; sampled_blocks_ (int); sample_global_ids_ (int64 [S, T]) global ids of a seeded
    subsample of at most max_share_inputs of those inputs (multi-hot: [S, W], each input's
    first sample_lookups_[i] entries its lookups, the rest a copy of its last one); table_offsets_ (int64 [T]),
    table_rows_ (list[int]), table_names_ (list[str]).
    """

    def __init__(
        self,
        sample_fraction: float = 0.05,
        seed: int = 0,
        block_rows: int = 65536,
        max_share_inputs: int = MAX_SHARE_INPUTS,
    ) -> None:
        self.sample_fraction = sample_fraction
        self.seed = seed
        self.block_rows = block_rows
        self.max_share_inputs = max_share_inputs

    def fit(
        self,
        sparse: np.ndarray,
        table_rows: Sequence[int],
        table_names: Sequence[str] | None = None,
        keys: Callable[[np.ndarray], np.ndarray] | None = None,
        bags: Callable[[int, int], tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> PopularityProfiler:
        """Count lookups of the sampled blocks of `sparse` ([N, T] per-table ids, memmap ok).

        `keys` maps ids [n, T] to the row keys [n, K] of K (virtual) tables of `table_rows`
        rows, for representations that read other rows than the ids (embeddings/keys.py).
        A multi-hot dataset gives `bags(a, b)` instead: every table's ids of rows a..b,
        sample-major (ids [M], lengths [n, T]); every id of a bag is counted, and the kept
        inputs (for the hot-input share) are padded to one width with their own last id."""
        rows = [int(n) for n in table_rows]
        names = [str(s) for s in table_names] if table_names is not None else None
        names = names or [f"t{t}" for t in range(len(rows))]
        to_keys = keys or (lambda ids: ids)
        if bags is None:
            first = to_keys(np.asarray(sparse[:1])) if len(sparse) else sparse
        else:
            first = np.zeros((min(1, len(sparse)), len(rows)), np.int64)  # checked per span
        self._check_args(first, rows, names)
        offsets = np.concatenate([[0], np.cumsum(rows)[:-1]]).astype(np.int64)  # [T]
        rng = np.random.default_rng(self.seed)
        spans = _sample_spans(len(sparse), self.block_rows, self.sample_fraction, rng)
        sampled = sum(b - a for a, b in spans)
        keep = _subsample(sampled, self.max_share_inputs, rng)  # [S] positions in the sample
        counter = _Counter(sum(rows))
        kept: list[np.ndarray] = []
        real: list[np.ndarray] = []  # multi-hot: ids of each kept input (the rest pads)
        pos = 0
        with _counting_progress(sampled) as advance:
            for a, b in spans:
                if bags is None:
                    ids = _global_ids(
                        to_keys(np.asarray(sparse[a:b])), rows, offsets, names, a
                    )  # [n, K]
                    counter.add(ids)
                    lo, hi = np.searchsorted(keep, [pos, pos + b - a])
                    kept.append(ids[keep[lo:hi] - pos])
                else:
                    flat, per_input = _bag_global_ids(*bags(a, b), rows, offsets, names, a)
                    counter.add(flat)
                    lo, hi = np.searchsorted(keep, [pos, pos + b - a])
                    kept.append(_padded(flat, per_input, keep[lo:hi] - pos))
                    real.append(per_input[keep[lo:hi] - pos])
                pos += b - a
                advance(b - a)
        if bags is not None:  # one width for all; at most MAX_SHARE_IDS ids kept
            width = max((k.shape[1] for k in kept), default=1)
            kept = [np.pad(k, ((0, 0), (0, width - k.shape[1])), mode="edge") for k in kept]
            every = max(1, -(-sum(len(k) for k in kept) * width // MAX_SHARE_IDS))
            kept = [np.concatenate(kept)[::every]] if kept else kept
            real = [np.concatenate(real)[::every]] if real else real
        self.counts_ = counter.result()
        self.sampled_inputs_ = sampled
        self.sampled_blocks_ = len(spans)
        self.sample_global_ids_ = np.concatenate(kept)
        width = self.sample_global_ids_.shape[1]
        self.sample_lookups_ = (  # real lookups of each kept input (multi-hot: the rest pads)
            np.concatenate(real)
            if bags is not None
            else np.full(len(self.sample_global_ids_), width)
        ).astype(np.int64)
        self.table_offsets_ = offsets
        self.table_rows_ = rows
        self.table_names_ = names
        return self

    def table_counts(self, t: int) -> np.ndarray:
        """Sampled lookups per row of table t ([n_t], a view of counts_)."""
        _check_fitted(self)
        start = int(self.table_offsets_[t])
        return self.counts_[start : start + self.table_rows_[t]]

    def _check_args(self, sparse: np.ndarray, rows: list[int], names: list[str]) -> None:
        if not 0 < self.sample_fraction <= 1:
            raise HotrecError(f"sample fraction must be in (0, 1], got {self.sample_fraction}")
        if self.block_rows < 1:
            raise HotrecError(f"block_rows must be >= 1, got {self.block_rows}")
        if self.max_share_inputs < 0:
            raise HotrecError(f"max_share_inputs must be >= 0, got {self.max_share_inputs}")
        if sparse.ndim != 2 or sparse.shape[1] != len(rows) or not rows:
            raise HotrecError(
                f"sparse ids of shape {tuple(sparse.shape)} do not match {len(rows)} tables"
            )
        if len(names) != len(rows):
            raise HotrecError(f"{len(names)} table names for {len(rows)} tables")
        if min(rows) < 1:
            raise HotrecError(f"every table needs at least one row, got {rows}")
        if len(sparse) == 0:
            raise HotrecError("no inputs to profile (the split is empty)")


class _Counter:
    """np.bincount over global ids, batched so each [R]-long pass covers many lookups."""

    def __init__(self, total_rows: int) -> None:
        self.counts = np.zeros(total_rows, np.int64)
        self.pending: list[np.ndarray] = []
        self.pending_lookups = 0
        self.flush_at = max(total_rows // 4, 1 << 22)

    def add(self, ids: np.ndarray) -> None:
        self.pending.append(ids.ravel())
        self.pending_lookups += ids.size
        if self.pending_lookups >= self.flush_at:
            self._flush()

    def result(self) -> np.ndarray:
        self._flush()
        return self.counts

    def _flush(self) -> None:
        if self.pending:
            ids = np.concatenate(self.pending)
            self.counts += np.bincount(ids, minlength=len(self.counts))
        self.pending, self.pending_lookups = [], 0


def _sample_spans(
    n: int, block_rows: int, fraction: float, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Row ranges [a, b) of whole blocks chosen without replacement, in file order."""
    blocks = -(-n // block_rows)
    k = min(blocks, max(1, int(np.ceil(fraction * n / block_rows))))
    chosen = np.sort(rng.choice(blocks, size=k, replace=False))
    return [(int(i) * block_rows, min(n, (int(i) + 1) * block_rows)) for i in chosen]


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of min(n, limit) of n sampled inputs, chosen without replacement."""
    if n <= limit:
        return np.arange(n, dtype=np.int64)
    return np.sort(rng.choice(n, size=limit, replace=False)).astype(np.int64)


def _global_ids(
    ids: np.ndarray, rows: list[int], offsets: np.ndarray, names: list[str], first_row: int
) -> np.ndarray:
    """Per-table ids [n, T] -> global ids [n, T] int64, refusing ids outside their table."""
    ids = ids.astype(np.int64)  # [n, T]
    bad = (ids < 0) | (ids >= np.asarray(rows, np.int64))  # [n, T]
    if bad.any():
        r, t = (int(x) for x in np.argwhere(bad)[0])
        raise HotrecError(
            f"table {names[t]}: id {int(ids[r, t])} at input {first_row + r} is outside "
            f"0..{rows[t] - 1}; the dataset is corrupt"
        )
    return ids + offsets


def _bag_global_ids(
    ids: np.ndarray,
    lengths: np.ndarray,
    rows: list[int],
    offsets: np.ndarray,
    names: list[str],
    first_row: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample-major ids [M] with lengths [n, T] -> (global ids [M] int64, ids per input [n]),
    refusing ids outside their table."""
    n, tables = lengths.shape
    table = np.repeat(np.tile(np.arange(tables), n), lengths.ravel())  # [M]
    ids = ids.astype(np.int64)
    bad = (ids < 0) | (ids >= np.asarray(rows, np.int64)[table])
    if bad.any():
        i = int(np.argmax(bad))
        row = first_row + int(np.searchsorted(np.cumsum(lengths.sum(axis=1)), i, side="right"))
        raise HotrecError(
            f"table {names[table[i]]}: id {int(ids[i])} at input {row} is outside "
            f"0..{rows[table[i]] - 1}; the dataset is corrupt"
        )
    return ids + offsets[table], lengths.sum(axis=1)


def _padded(flat: np.ndarray, per_input: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Global ids of the `chosen` inputs [S, W], each padded with its own last id (an input
    without ids gets row 0), so "every lookup hot" is unchanged by the padding."""
    starts = np.concatenate([[0], np.cumsum(per_input)[:-1]])[chosen]
    counts = per_input[chosen]
    width = max(int(counts.max(initial=0)), 1)
    column = np.minimum(np.arange(width)[None, :], np.maximum(counts - 1, 0)[:, None])  # [S, W]
    if len(flat) == 0:
        return np.zeros((len(chosen), width), np.int64)
    index = np.minimum(starts[:, None] + column, len(flat) - 1)
    out = flat[index]
    out[counts == 0] = 0
    return out


@contextmanager
def _counting_progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` sampled rows when there are many; yields advance(n)."""
    if total < PROGRESS_MIN_ROWS:
        yield lambda n: None
        return
    with make_progress("rows") as bar:
        task = bar.add_task("profile", total=total, rate="", info="counting lookups")
        start, done = time.perf_counter(), [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = format_rate(done[0], time.perf_counter() - start, "rows")
            bar.update(task, advance=n, rate=rate)

        yield advance


def _check_fitted(profiler: PopularityProfiler) -> None:
    if not hasattr(profiler, "counts_"):
        raise HotrecError("the popularity profiler is not fitted yet (call fit first)")


def capacity_for(budget_bytes: int, dim: int, bytes_per_value: int = 4) -> int:
    """Rows that fit the budget: budget_bytes // (dim * bytes_per_value)."""
    if dim < 1 or bytes_per_value < 1:
        raise HotrecError(f"dim and bytes per value must be >= 1, got {dim} and {bytes_per_value}")
    if budget_bytes < 0:
        raise HotrecError(f"the hot budget must be >= 0 bytes, got {budget_bytes}")
    return int(budget_bytes) // (int(dim) * int(bytes_per_value))


def top_rows(counts: np.ndarray, k: int) -> np.ndarray:
    """Sorted ids of the k most counted rows (counts > 0 only; lower id first among equals)."""
    seen = np.flatnonzero(counts)
    if k >= len(seen):
        return seen.astype(np.int64)
    if k <= 0:
        return np.zeros(0, np.int64)
    c = counts[seen]
    kth = np.partition(c, len(c) - k)[len(c) - k]  # the k-th largest count
    above = seen[c > kth]
    ties = seen[c == kth][: k - len(above)]  # seen is ascending: lower ids win ties
    return np.sort(np.concatenate([above, ties])).astype(np.int64)


def row_ranks(counts: np.ndarray) -> np.ndarray:
    """Rank [R] of every row in hot order (top_rows(counts, k) = rows of rank < k); rows
    never seen get NEVER."""
    seen = np.flatnonzero(counts)
    order = seen[np.argsort(-counts[seen], kind="stable")]
    rank = np.full(len(counts), NEVER, np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def access_cdf(counts: np.ndarray, points: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(share of rows, share of lookups they take) for the most counted rows first, at up to
    `points` geometrically spaced row counts (a CDF to plot on a log x axis)."""
    n = len(counts)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    cum = np.cumsum(np.sort(counts)[::-1])  # [n]
    top = np.unique(np.geomspace(1, n, max(2, points)).round().astype(np.int64))  # row counts
    total = int(cum[-1])
    shares = cum[top - 1] / total if total else np.zeros(len(top))
    return top / n, shares


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def hot_input_share_curve(
    profiler: PopularityProfiler,
    dim: int,
    budgets_bytes: Sequence[int],
    bytes_per_value: int = 4,
) -> list[dict]:
    """For each budget: capacity, hot rows, lookup share and input share of the hot set that
    HotSet.from_profile would build. One pass: an input is hot under capacity c iff the
    largest rank (row_ranks) among its lookups is < c."""
    _check_fitted(profiler)
    counts = profiler.counts_
    seen_counts = np.sort(counts[counts > 0])[::-1]
    cum = np.concatenate([[0], np.cumsum(seen_counts)])  # [seen + 1] lookups of the top k rows
    sample = profiler.sample_global_ids_
    worst = np.sort(row_ranks(counts)[sample].max(axis=1)) if len(sample) else np.zeros(0)  # [S]
    curve = []
    for budget in budgets_bytes:
        capacity = capacity_for(budget, dim, bytes_per_value)
        hot = min(capacity, len(seen_counts))
        curve.append(
            {
                "budget_bytes": int(budget),
                "capacity": capacity,
                "hot_rows": hot,
                "lookup_share": _share(int(cum[hot]), int(cum[-1])),
                "input_share": _share(int(np.searchsorted(worst, capacity)), len(sample)),
            }
        )
    return curve
