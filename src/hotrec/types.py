"""Core value types shared by every layer: the dataset schema and one mini-batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only annotations use torch: data preparation does not pay its import
    import torch


POOLINGS = ("sum", "mean")  # how a multi-hot (bag) table pools the rows of one sample's bag


@dataclass(frozen=True)
class TableSpec:
    """One categorical feature's embedding table."""

    name: str  # feature name, e.g. "C1"
    rows: int  # cardinality including the reserved id 0 (missing / rare)
    pooling: str = ""  # "" = one id per sample (one-hot); sum | mean: a bag of ids, pooled

    @property
    def is_bag(self) -> bool:
        return bool(self.pooling)


@dataclass(frozen=True)
class Schema:
    """What a dataset holds: dense feature names and one table per sparse feature."""

    dense_names: tuple[str, ...]
    tables: tuple[TableSpec, ...]

    @property
    def num_dense(self) -> int:
        return len(self.dense_names)

    @property
    def num_tables(self) -> int:
        return len(self.tables)

    @property
    def table_rows(self) -> list[int]:
        return [t.rows for t in self.tables]

    @property
    def table_offsets(self) -> np.ndarray:
        """Start of each table in the fused row space: global id = offset[t] + row."""
        return np.concatenate([[0], np.cumsum(self.table_rows)[:-1]]).astype(np.int64)

    @property
    def total_rows(self) -> int:
        return int(sum(self.table_rows))

    @property
    def bag_tables(self) -> list[int]:
        """Indices of the multi-hot (bag) tables, in schema order."""
        return [i for i, t in enumerate(self.tables) if t.is_bag]

    @property
    def one_hot_tables(self) -> list[int]:
        """Indices of the one-hot tables (the columns of sparse.npy), in schema order."""
        return [i for i, t in enumerate(self.tables) if not t.is_bag]

    @property
    def has_bags(self) -> bool:
        return any(t.is_bag for t in self.tables)

    def to_dict(self) -> dict:
        def table(t: TableSpec) -> dict:
            return {"name": t.name, "rows": t.rows, **({"pooling": t.pooling} if t.is_bag else {})}

        return {"dense": list(self.dense_names), "tables": [table(t) for t in self.tables]}

    @classmethod
    def from_dict(cls, d: dict) -> Schema:
        """The schema as written by to_dict; ValueError naming the first bad field."""
        if not isinstance(d, dict):
            raise ValueError("schema is not an object")
        dense, tables = d.get("dense"), d.get("tables")
        if not isinstance(dense, list) or not all(isinstance(n, str) for n in dense):
            raise ValueError("schema.dense is not a list of names")
        if not isinstance(tables, list):
            raise ValueError("schema.tables is not a list")
        specs = []
        for i, t in enumerate(tables):
            name, rows = (t.get("name"), t.get("rows")) if isinstance(t, dict) else (None, None)
            if not isinstance(name, str):
                raise ValueError(f"schema.tables[{i}].name is not a string")
            if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
                raise ValueError(f"schema.tables[{i}].rows is {rows!r}, not a positive integer")
            pooling = t.get("pooling", "")
            if pooling not in ("", *POOLINGS):
                raise ValueError(
                    f"schema.tables[{i}].pooling is {pooling!r}, not one of {', '.join(POOLINGS)}"
                )
            specs.append(TableSpec(name, rows, pooling))
        return cls(dense_names=tuple(dense), tables=tuple(specs))


@dataclass
class Bags:
    """Every table's ids of a batch from a dataset with multi-hot (bag) tables, jagged and
    sample-major: sample 0's ids of table 0, of table 1, ..., then sample 1's. A one-hot
    table's bag always holds one id; a bag may be empty (its pooled vector is zero)."""

    values: torch.Tensor  # [L] int64 per-table ids (not offset into the fused space)
    lengths: torch.Tensor  # [B, T] int64 ids of each (sample, table)

    def owners(self) -> torch.Tensor:
        """[L] the sample of each id."""
        import torch

        return torch.arange(self.lengths.shape[0]).repeat_interleave(self.lengths.sum(dim=1))

    def tables(self) -> torch.Tensor:
        """[L] the table of each id."""
        import torch

        batch, tables = self.lengths.shape
        return torch.arange(tables).repeat(batch).repeat_interleave(self.lengths.reshape(-1))

    def select(self, keep: torch.Tensor) -> Bags:
        """The bags of the samples where `keep` (bool [B]) holds, in order."""
        return Bags(self.values[keep[self.owners()]], self.lengths[keep])


@dataclass
class Batch:
    """One mini-batch. sparse holds per-table ids (not yet offset into the fused space).
    With multi-hot tables, `bags` holds every table's ids and `sparse` only the one-hot
    tables' columns (what the one-hot-only code paths read); `bags` stays on the host."""

    dense: torch.Tensor  # [B, F_d] float32
    sparse: torch.Tensor  # [B, T] int64 ([B, T_one_hot] with bags)
    label: torch.Tensor  # [B] float32
    bags: Bags | None = None

    def __len__(self) -> int:
        return self.label.shape[0]

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.dense.to(device, non_blocking=non_blocking),
            self.sparse.to(device, non_blocking=non_blocking),
            self.label.to(device, non_blocking=non_blocking),
            self.bags,
        )

    def pin_memory(self) -> Batch:
        return Batch(
            self.dense.pin_memory(),
            self.sparse.pin_memory(),
            self.label.pin_memory(),
            self.bags,  # read on the host only
        )
