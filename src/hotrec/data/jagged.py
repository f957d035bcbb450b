"""Multi-hot (bag) ids: the rows of a jagged on-disk table, and a batch's sample-major bags.

On disk each bag table is (values [L], offsets [N + 1]); a batch carries every table's ids
as one sample-major jagged tensor (types.Bags), which the embedding pools per (sample, table).
"""

from __future__ import annotations

import numpy as np
import torch

from hotrec.types import Bags


def take_rows(
    values: np.ndarray, offsets: np.ndarray, rows: slice | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The bags of `rows` (a slice of consecutive rows, or an index array) of one table:
    (their ids [l] in row order, int64 lengths [n])."""
    if isinstance(rows, slice):
        a, b = rows.start or 0, rows.stop
        bounds = np.asarray(offsets[a : b + 1], dtype=np.int64)
        return np.asarray(values[bounds[0] : bounds[-1]]), np.diff(bounds)
    rows = np.asarray(rows, dtype=np.int64)
    starts = np.asarray(offsets[rows], dtype=np.int64)
    lengths = np.asarray(offsets[rows + 1], dtype=np.int64) - starts
    return np.asarray(values[segment_index(starts, lengths)]), lengths


def segment_index(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Positions [sum(lengths)] of the segments (starts[i], lengths[i]) of a flat array, one
    segment after the other: what gathers chosen bags out of jagged values."""
    first = np.repeat(
        np.cumsum(lengths) - lengths, lengths
    )  # each id's segment start in the output
    return np.repeat(starts, lengths) + np.arange(int(lengths.sum())) - first


def sample_major(
    one_hot: np.ndarray,
    one_hot_tables: tuple[int, ...],
    bags: list[tuple[np.ndarray, np.ndarray]],
    bag_tables: tuple[int, ...],
    num_tables: int,
) -> Bags:
    """Every table's ids of n samples as sample-major Bags: one-hot ids [n, T1] (one per
    sample, of the tables `one_hot_tables`) and, per bag table of `bag_tables`, (ids in row
    order, lengths [n])."""
    n = one_hot.shape[0]
    lengths = np.ones((n, num_tables), dtype=np.int64)
    samples = np.arange(n, dtype=np.int64) * num_tables
    keys = [(samples[:, None] + np.asarray(one_hot_tables, dtype=np.int64)).reshape(-1)]
    values = [one_hot.astype(np.int64).reshape(-1)]
    for t, (ids, count) in zip(bag_tables, bags, strict=True):
        lengths[:, t] = count
        keys.append(np.repeat(samples + t, count))
        values.append(ids.astype(np.int64))
    order = np.argsort(np.concatenate(keys), kind="stable")  # (sample, table), bag order kept
    return Bags(torch.from_numpy(np.concatenate(values)[order]), torch.from_numpy(lengths))
