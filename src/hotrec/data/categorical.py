"""Categorical value -> contiguous id mapping shared by the Criteo and Avazu preparers.

Raw categorical values are first turned into non-negative int64 keys by each source (Criteo:
the 32-bit hex value; missing = -1). Then, per table, either
  * frequency vocabulary: values seen >= min_count times get ids 1..K by decreasing count
    (ties by key), everything else (rare, missing, unseen) gets id 0; or
  * hashing: id = 1 + key mod (N - 1), missing -> 0, so the table has exactly N rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from hotrec.errors import HotrecError

MISSING = -1  # key of an empty field


class CountAccumulator:
    """Per-table value counts over a stream of key chunks, memory bounded by the vocabulary.

    Chunk counts are buffered and merged when the buffer outgrows the merged table, so the
    cost stays amortized linear in the number of distinct values.
    """

    def __init__(self, num_tables: int) -> None:
        self.num_tables = num_tables
        self._merged: list[pl.DataFrame | None] = [None] * num_tables
        self._pending: list[list[pl.DataFrame]] = [[] for _ in range(num_tables)]
        self._pending_rows = [0] * num_tables

    def update(self, keys: np.ndarray) -> None:
        """keys: [n, T] int64, MISSING for empty fields (not counted)."""
        for t in range(self.num_tables):
            col = pl.Series("key", keys[:, t])
            vc = col.filter(col != MISSING).value_counts(name="count")
            self._pending[t].append(vc.with_columns(pl.col("count").cast(pl.Int64)))
            self._pending_rows[t] += vc.height
            merged_rows = 0 if self._merged[t] is None else self._merged[t].height
            if self._pending_rows[t] > max(merged_rows, 1 << 16):
                self._merge(t)

    def _merge(self, t: int) -> None:
        parts = (
            self._pending[t] if self._merged[t] is None else [self._merged[t]] + self._pending[t]
        )
        if parts:
            self._merged[t] = pl.concat(parts).group_by("key").agg(pl.col("count").sum())
        self._pending[t], self._pending_rows[t] = [], 0

    def counts(self, t: int) -> pl.DataFrame:
        """Columns key (int64), count (int64) for table t."""
        self._merge(t)
        if self._merged[t] is None:
            return pl.DataFrame(
                {"key": [], "count": []}, schema={"key": pl.Int64, "count": pl.Int64}
            )
        return self._merged[t]


class Vocabulary:
    """Frequency-ranked key -> id map for one table; keys_by_id[i] has id i + 1."""

    def __init__(self, keys_by_id: np.ndarray) -> None:
        self.keys_by_id = np.asarray(keys_by_id, dtype=np.int64)
        order = np.argsort(self.keys_by_id, kind="stable")
        self._sorted_keys = self.keys_by_id[order]
        self._sorted_ids = (order + 1).astype(np.int64)

    @classmethod
    def from_counts(cls, counts: pl.DataFrame, min_count: int) -> Vocabulary:
        kept = counts.filter(pl.col("count") >= min_count).sort(
            ["count", "key"], descending=[True, False]
        )
        return cls(kept["key"].to_numpy())

    @property
    def rows(self) -> int:
        """Table rows including id 0."""
        return len(self.keys_by_id) + 1

    def map(self, keys: np.ndarray) -> np.ndarray:
        """int64 keys -> ids; unknown, rare and missing keys -> 0."""
        if len(self._sorted_keys) == 0:
            return np.zeros(keys.shape, dtype=np.int64)
        pos = np.searchsorted(self._sorted_keys, keys)
        pos = np.minimum(pos, len(self._sorted_keys) - 1)
        found = self._sorted_keys[pos] == keys
        return np.where(found, self._sorted_ids[pos], 0)

    def save(self, path: Path) -> None:
        np.save(path, self.keys_by_id)

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        """Read vocab/<name>.npy (never unpickles); one line naming the file when damaged."""
        try:
            keys = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise HotrecError(f"{path} is not a readable vocabulary (damaged?): {e}") from None
        if keys.ndim != 1 or keys.dtype.kind not in "iu":
            raise HotrecError(
                f"{path} is not a vocabulary: expected a 1-d integer array, found "
                f"{keys.dtype} of shape {keys.shape}"
            )
        return cls(keys.astype(np.int64, copy=False))


def hash_ids(keys: np.ndarray, rows: int) -> np.ndarray:
    """Hashing mode: id = 1 + key mod (rows - 1); missing -> 0."""
    if rows < 2:
        raise ValueError("--hash-rows must be at least 2")
    return np.where(keys == MISSING, 0, 1 + np.mod(keys, rows - 1))


def save_vocabularies(vocabs: list[Vocabulary], names: list[str], directory: Path) -> None:
    """vocab/<name>.npy per table: raw keys in id order, for mapping raw fields at serving."""
    directory.mkdir(parents=True, exist_ok=True)
    for v, name in zip(vocabs, names, strict=True):
        v.save(directory / f"{name}.npy")
