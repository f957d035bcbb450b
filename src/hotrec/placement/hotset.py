"""The hot set: the global rows kept on the device under FAE's byte budget.

Built from a fitted PopularityProfiler: the N most counted rows, N = budget_bytes //
(dim * bytes_per_value), rows never seen left out and ties broken by the lower global id, so
the same profile always gives the same hot set. It maps global ids to device slots (numpy or
torch), reports its coverage statistics, and saves to / loads from an .npz atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hotrec.errors import HotrecError
from hotrec.fileio import atomic_write
from hotrec.placement.popularity import (
    PopularityProfiler,
    _check_fitted,
    _share,
    capacity_for,
    top_rows,
)

__all__ = ["FORMAT_VERSION", "HotSet"]

FORMAT_VERSION = 1  # of the saved hot-set .npz

IdArray = np.ndarray | torch.Tensor


class HotSet:
    """The global rows kept on the device: rows[i] (sorted int64) lives in slot i."""

    def __init__(
        self,
        rows: np.ndarray,
        table_offsets: np.ndarray,
        table_rows: Sequence[int],
        table_names: Sequence[str],
        stats: dict,
    ) -> None:
        self.rows = np.asarray(rows, np.int64)
        self.table_offsets = np.asarray(table_offsets, np.int64)
        self.table_rows = [int(n) for n in table_rows]
        self.table_names = [str(s) for s in table_names]
        self.stats = dict(stats)
        self._device_rows: dict[torch.device, torch.Tensor] = {}

    @classmethod
    def from_profile(
        cls, profiler: PopularityProfiler, budget_bytes: int, dim: int, bytes_per_value: int = 4
    ) -> HotSet:
        """The N most counted rows of a fitted profiler, N = budget_bytes // (dim * bytes)."""
        _check_fitted(profiler)
        capacity = capacity_for(budget_bytes, dim, bytes_per_value)
        counts = profiler.counts_
        hot = cls(
            top_rows(counts, capacity),
            profiler.table_offsets_,
            profiler.table_rows_,
            profiler.table_names_,
            {},
        )
        sample = profiler.sample_global_ids_
        hot.stats = {
            "budget_bytes": int(budget_bytes),
            "dim": int(dim),
            "bytes_per_value": int(bytes_per_value),
            "capacity": capacity,
            "hot_rows": len(hot.rows),
            "hot_bytes": len(hot.rows) * int(dim) * int(bytes_per_value),
            "seen_rows": int(np.count_nonzero(counts)),
            "total_rows": len(counts),
            "hot_rows_per_table": dict(zip(hot.table_names, hot.rows_per_table(), strict=True)),
            "lookup_share_per_table": _lookup_share_per_table(profiler, hot.rows),
            "lookup_share": _share(int(counts[hot.rows].sum()), int(counts.sum())),
            "input_share": _share(int(hot.hot_inputs(sample).sum()), len(sample)),
            "sampled_inputs": int(profiler.sampled_inputs_),
            "share_inputs": len(sample),
            "sample_fraction": float(profiler.sample_fraction),
            "seed": int(profiler.seed),
        }
        return hot

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def capacity(self) -> int:
        return int(self.stats.get("capacity", len(self.rows)))

    @property
    def dim(self) -> int | None:
        return self.stats.get("dim")

    @property
    def total_rows(self) -> int:
        return int(sum(self.table_rows))

    def rows_per_table(self) -> list[int]:
        """Hot rows in each table."""
        table = np.searchsorted(self.table_offsets, self.rows, side="right") - 1  # [N]
        return [int(n) for n in np.bincount(table, minlength=len(self.table_rows))]

    def to_global(self, sparse: IdArray) -> IdArray:
        """Per-table ids [B, T] -> global ids [B, T] int64 (numpy or torch, as given)."""
        if isinstance(sparse, torch.Tensor):
            offsets = torch.as_tensor(self.table_offsets, device=sparse.device)
            return sparse.long() + offsets
        return np.asarray(sparse).astype(np.int64) + self.table_offsets

    def slots(self, global_ids: IdArray) -> IdArray:
        """Device slot of every global id, -1 where it is not hot (int64, same type/shape)."""
        if isinstance(global_ids, torch.Tensor):
            return self._slots_torch(global_ids)
        ids = np.asarray(global_ids)
        if len(self.rows) == 0:
            return np.full(ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.rows, ids), len(self.rows) - 1)
        return np.where(self.rows[pos] == ids, pos, -1).astype(np.int64)

    def is_hot(self, global_ids: IdArray) -> IdArray:
        """Boolean mask: which global ids are hot."""
        return self.slots(global_ids) >= 0

    def hot_inputs(self, global_ids: IdArray) -> IdArray:
        """Boolean [B]: inputs ([B, T] global ids) all of whose lookups are hot."""
        hot = self.is_hot(global_ids)  # [B, T]
        if isinstance(hot, torch.Tensor):
            return hot.all(dim=1)
        return hot.all(axis=1)

    def slot_map(self) -> np.ndarray:
        """Dense int64 [R] map: slot of every global row, -1 for cold rows."""
        slot_of = np.full(self.total_rows, -1, np.int64)
        slot_of[self.rows] = np.arange(len(self.rows), dtype=np.int64)
        return slot_of

    def check_compatible(self, table_rows: Sequence[int], dim: int) -> None:
        """Raise HotrecError unless this hot set was profiled for these tables and this dim."""
        if [int(n) for n in table_rows] != self.table_rows:
            raise HotrecError(
                "the hot set was profiled on other tables than the model's; rerun 'hotrec profile'"
            )
        if self.dim is not None and int(dim) != self.dim:
            raise HotrecError(
                f"the hot set was sized for embedding_dim {self.dim} but the model uses {dim}; "
                f"rerun 'hotrec profile --dim {dim}'"
            )

    def save(self, path: str | os.PathLike) -> Path:
        """Write an .npz (rows, tables, stats as JSON) atomically: temp file, then rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                format_version=np.int64(FORMAT_VERSION),
                rows=self.rows,
                table_offsets=self.table_offsets,
                table_rows=np.asarray(self.table_rows, np.int64),
                table_names=np.asarray(self.table_names, dtype=str),
                stats=np.asarray(json.dumps(self.stats)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> HotSet:
        """Read a hot set written by save, with a one-line error for a missing or bad file."""
        path = Path(path)
        if not path.is_file():
            raise HotrecError(f"{path}: no such hot-set file (write one with 'hotrec profile')")
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version != FORMAT_VERSION:
                    raise HotrecError(f"{path}: unsupported hot-set format {version}")
                fields = (
                    z["rows"],
                    z["table_offsets"],
                    z["table_rows"],
                    z["table_names"].tolist(),
                    json.loads(str(z["stats"])),
                )
        except HotrecError:
            raise
        except Exception as e:  # zip, npy, JSON or key errors of a damaged file
            raise HotrecError(
                f"{path} is not a hotrec hot-set file ({type(e).__name__}: {e})"
            ) from None
        _check_fields(path, *fields)
        rows, offsets, table_rows, names, stats = fields
        return cls(rows, offsets, table_rows.tolist(), names, stats)

    def _slots_torch(self, global_ids: torch.Tensor) -> torch.Tensor:
        ids = global_ids.long().contiguous()
        if len(self.rows) == 0:
            return torch.full_like(ids, -1)
        rows = self._rows_on(ids.device)
        pos = torch.searchsorted(rows, ids).clamp_(max=len(self.rows) - 1)
        return torch.where(rows[pos] == ids, pos, torch.full_like(pos, -1))

    def _rows_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._device_rows:
            self._device_rows[device] = torch.from_numpy(self.rows).to(device)
        return self._device_rows[device]


def _check_fields(path, rows, offsets, table_rows, names, stats) -> None:
    """A hot set's arrays are consistent: sorted unique ids inside the tables it names."""

    def bad(what: str) -> HotrecError:
        return HotrecError(f"{path} is damaged: {what}; rerun 'hotrec profile'")

    for name, a in (("rows", rows), ("table_offsets", offsets), ("table_rows", table_rows)):
        if a.ndim != 1 or a.dtype.kind not in "iu":
            raise bad(f"{name} is {a.dtype} {a.shape}, not a list of integers")
    if len(table_rows) != len(offsets) or len(names) != len(table_rows):
        raise bad("tables, offsets and names differ in number")
    if (table_rows < 1).any() or not np.array_equal(
        offsets, np.concatenate([[0], np.cumsum(table_rows)[:-1]]).astype(offsets.dtype)
    ):
        raise bad("table offsets do not follow the table sizes")
    total = int(table_rows.sum())
    if len(rows) and (rows[0] < 0 or rows[-1] >= total or (np.diff(rows) <= 0).any()):
        raise bad(f"hot rows are not sorted unique ids in 0..{total - 1}")
    if not isinstance(stats, dict):
        raise bad("stats is not an object")


def _lookup_share_per_table(profiler: PopularityProfiler, hot_rows: np.ndarray) -> dict:
    """Per table name: share of its sampled lookups that hit hot rows."""
    hot_counts = np.zeros_like(profiler.counts_)
    hot_counts[hot_rows] = profiler.counts_[hot_rows]
    out = {}
    for t, name in enumerate(profiler.table_names_):
        a = int(profiler.table_offsets_[t])
        b = a + profiler.table_rows_[t]
        out[name] = _share(int(hot_counts[a:b].sum()), int(profiler.counts_[a:b].sum()))
    return out
