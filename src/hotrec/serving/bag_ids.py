"""A query's ids when the artifact's dataset has multi-hot (bag) tables.

A request's `sparse` row then holds one entry per table: an id for a one-hot table, a list
of ids for a bag table (an id alone counts as a bag of one; [] is an empty bag, which pools
to zeros). The checked ids travel through the batcher and to the worker processes as
`BagIds`: every table's ids sample-major (values [L]) with lengths [B, T], numpy, as the
training loader's batches carry them (types.Bags); they are never padded to a width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from hotrec.data.jagged import segment_index
from hotrec.data.loader import jagged_ids
from hotrec.types import Bags, Schema

MAX_BAG = 4096  # ids one bag of a request may hold


@dataclass
class BagIds:
    values: np.ndarray  # int64 [L] every table's ids, sample-major
    lengths: np.ndarray  # int64 [B, T] ids of each (item, table)

    def __len__(self) -> int:
        return self.lengths.shape[0]

    @staticmethod
    def concat(parts: Sequence[BagIds]) -> BagIds:
        return BagIds(
            np.concatenate([p.values for p in parts]), np.concatenate([p.lengths for p in parts])
        )

    def take(self, index: np.ndarray) -> BagIds:
        """The items at `index` (repeats allowed), in that order."""
        per_item = self.lengths.sum(axis=1)
        starts = np.cumsum(per_item) - per_item
        source = segment_index(starts[index], per_item[index])
        return BagIds(self.values[source], self.lengths[index])

    def tables(self) -> np.ndarray:
        """[L] the table of each id (as types.Bags.tables)."""
        n, t = self.lengths.shape
        return np.tile(np.arange(t), n).repeat(self.lengths.reshape(-1))

    def to_bags(self) -> Bags:
        return Bags(torch.from_numpy(self.values), torch.from_numpy(self.lengths))

    def one_hot(self, tables: Sequence[int]) -> np.ndarray:
        """The ids of the one-hot `tables` [B, len(tables)] (each of their bags holds one)."""
        keep = np.isin(self.tables(), np.asarray(tables, dtype=np.int64))
        return self.values[keep].reshape(len(self), len(tables))

    def to_rows(self, bag_tables: Sequence[int]) -> list[list]:
        """JSON rows: an id per one-hot table, a list of ids per bag table (`bag_tables`)."""
        bag = set(bag_tables)
        out, at = [], 0
        for row in self.lengths.tolist():
            items = []
            for t, n in enumerate(row):
                ids = self.values[at : at + n].tolist()
                items.append(ids if t in bag else ids[0])
                at += n
            out.append(items)
        return out


def parse_bag_rows(rows, schema: Schema) -> BagIds:
    """Request rows (an id per one-hot table, a list of ids or one id per bag table) -> BagIds;
    ValueError with one line naming the first bad entry (shape, type or range)."""
    if isinstance(rows, BagIds):
        _check_ranges(rows, schema)
        return rows
    tables = schema.tables
    values: list[int] = []
    lengths = np.zeros((len(rows), len(tables)), dtype=np.int64)
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple | np.ndarray) or len(row) != len(tables):
            raise ValueError(
                f"sparse[{i}] must hold {len(tables)} entries (an id per one-hot table, a list "
                "of ids per bag table)"
            )
        for t, entry in enumerate(row):
            ids = _entry_ids(entry, tables[t].is_bag, i, t)
            values.extend(ids)
            lengths[i, t] = len(ids)
    out = BagIds(np.asarray(values, dtype=np.int64).reshape(-1), lengths)
    _check_ranges(out, schema)
    return out


def _entry_ids(entry, is_bag: bool, i: int, t: int) -> list[int]:
    if _is_id(entry):
        return [int(entry)]
    if is_bag and isinstance(entry, list | tuple) and all(_is_id(x) for x in entry):
        if len(entry) > MAX_BAG:
            raise ValueError(f"sparse[{i}][{t}] holds {len(entry)} ids, at most {MAX_BAG}")
        return [int(x) for x in entry]
    what = "an id or a list of ids" if is_bag else "an id (a one-hot table)"
    raise ValueError(f"sparse[{i}][{t}] must be {what}, got {entry!r}"[:200])


def _is_id(x) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _check_ranges(ids: BagIds, schema: Schema) -> None:
    rows = np.asarray(schema.table_rows, dtype=np.int64)
    table = ids.tables()  # [L]
    bad = (ids.values < 0) | (ids.values >= rows[table])
    if bad.any():
        at = int(np.argmax(bad))
        item = int(np.searchsorted(np.cumsum(ids.lengths.sum(axis=1)), at, side="right"))
        spec = schema.tables[int(table[at])]
        raise ValueError(
            f"sparse[{item}][{int(table[at])}] holds id {int(ids.values[at])}, out of range "
            f"for table {spec.name} (ids 0..{spec.rows - 1})"
        )
    one_hot = [i for i, s in enumerate(schema.tables) if not s.is_bag]
    if one_hot and (ids.lengths[:, one_hot] != 1).any():
        raise ValueError("sparse: a one-hot table's entry must hold exactly one id")


def zero_ids(schema: Schema, n: int) -> BagIds:
    """n items whose every bag holds id 0 (warm-up inputs)."""
    t = schema.num_tables
    return BagIds(np.zeros(n * t, dtype=np.int64), np.ones((n, t), dtype=np.int64))


def random_ids(schema: Schema, n: int, rng: np.random.Generator, longest: int = 8) -> BagIds:
    """n items of uniform ids; a bag table's bags hold 1..longest of them (stand-ins for a
    profile without a dataset)."""
    lengths = np.ones((n, schema.num_tables), dtype=np.int64)
    for t in schema.bag_tables:
        lengths[:, t] = rng.integers(1, longest + 1, n)
    table = BagIds(np.zeros(0, dtype=np.int64), lengths).tables()
    rows = np.asarray(schema.table_rows, dtype=np.int64)[table]
    return BagIds((rng.random(len(table)) * rows).astype(np.int64), lengths)


def concat_ids(parts: Sequence[np.ndarray | BagIds]) -> np.ndarray | BagIds:
    """Queries' ids as one batch: [N, T] arrays stacked, or BagIds joined."""
    if parts and isinstance(parts[0], BagIds):
        return BagIds.concat(parts)
    return np.concatenate(parts)


def take_ids(ids: np.ndarray | BagIds, index: np.ndarray) -> np.ndarray | BagIds:
    return ids.take(index) if isinstance(ids, BagIds) else ids[index]


def split_ids(split, rows: slice | np.ndarray) -> np.ndarray | BagIds:
    """The ids of `rows` of a dataset split (data.format.SplitArrays): [n, T], or BagIds."""
    if split.layout is None:
        return np.asarray(split.sparse[rows], dtype=np.int64)
    values, lengths = jagged_ids(split, rows)
    return BagIds(values, lengths)


def ids_as_rows(split, rows: np.ndarray) -> list[list]:
    """The ids of `rows` of a split as a request's `sparse` rows."""
    ids = split_ids(split, rows)
    return ids.to_rows(split.layout.bag) if isinstance(ids, BagIds) else ids.tolist()
