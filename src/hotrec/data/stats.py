"""Popularity skew of a prepared dataset: how much of each table's traffic its hottest rows take."""

from __future__ import annotations

import numpy as np

from hotrec.data.format import Dataset
from hotrec.errors import HotrecError

CHUNK_ROWS = 1 << 19  # sparse rows read per step
MAX_COUNTS = 1 << 25  # table rows counted per pass over the split (int64 counters: 256 MiB)


def _table_groups(rows: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups of tables whose counters fit the budget (a bigger table goes alone)."""
    groups: list[list[int]] = []
    used = 0
    for t, n in enumerate(rows):
        if not groups or used + n > budget:
            groups.append([])
            used = 0
        groups[-1].append(t)
        used += n
    return groups


def _count(ids: np.ndarray, rows: int, name: str) -> np.ndarray:
    """Lookups per row [rows] of one chunk of a table's ids, refusing out-of-range ids."""
    if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= rows):
        bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
        raise HotrecError(f"table {name}: id {bad} outside 0..{rows - 1}; the dataset is corrupt")
    return np.bincount(ids, minlength=rows)


def top_share(counts: np.ndarray, k: int) -> float:
    """Share of all counted lookups that fall on the k most-counted rows."""
    total = int(counts.sum())
    if total == 0:
        return 0.0
    k = min(k, len(counts))
    top = np.partition(counts, len(counts) - k)[len(counts) - k :]
    return int(top.sum()) / total


def skew_summary(
    dataset: Dataset, split: str = "train", max_rows: int | None = 2_000_000
) -> list[dict]:
    """Per table: rows, distinct ids seen, and the lookup share of its top 1% and 10% of rows.

    The top k rows are k = max(1, int(fraction x the table's rows)) of its cardinality, id 0
    (missing / rare) included like any other row: it is a row the model looks up. Counts come
    from np.bincount over the split's sparse column (a bag table: every id of its bags), read
    in chunks. Only the first max_rows
    rows are counted when max_rows is given; "scanned_rows" then says how many (else None).
    """
    arrays = dataset.split(split)
    sparse = arrays.sparse
    n = len(sparse) if max_rows is None else min(len(sparse), max_rows)
    truncated = n < len(sparse)
    rows = dataset.schema.table_rows
    column = {t: c for c, t in enumerate(dataset.schema.one_hot_tables)}
    bags = dict(zip(dataset.schema.bag_tables, arrays.bags, strict=True))  # every id of a bag
    out: list[dict] = []
    for group in _table_groups(rows, MAX_COUNTS):
        counts = {t: np.zeros(rows[t], np.int64) for t in group}
        for a in range(0, n, CHUNK_ROWS):
            b = min(n, a + CHUNK_ROWS)
            block = np.asarray(sparse[a:b])  # [chunk, T_one_hot]
            for t in group:
                if t in bags:
                    values, offsets = bags[t]
                    ids = np.asarray(values[int(offsets[a]) : int(offsets[b])])
                else:
                    ids = block[:, column[t]]
                counts[t] += _count(ids, rows[t], dataset.schema.tables[t].name)
        for t in group:
            c = counts[t]
            out.append(
                {
                    "name": dataset.schema.tables[t].name,
                    "rows": rows[t],
                    "lookups": int(c.sum()),
                    "distinct": int(np.count_nonzero(c)),
                    "top1_rows": max(1, int(rows[t] * 0.01)),
                    "top10_rows": max(1, int(rows[t] * 0.10)),
                    "top1_share": top_share(c, max(1, int(rows[t] * 0.01))),
                    "top10_share": top_share(c, max(1, int(rows[t] * 0.10))),
                    "scanned_rows": n if truncated else None,
                }
            )
    return out
