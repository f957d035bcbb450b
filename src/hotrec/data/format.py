"""The dataset directory: meta.json + per-split dense/sparse/label .npy memmaps.

A multi-hot (bag) table t is stored jagged beside them: ``bag-<t>-values.npy`` (every row's
ids, row after row) and ``bag-<t>-offsets.npy`` ([N + 1] int64: row i's ids are
values[offsets[i]:offsets[i + 1]]); sparse.npy then holds only the one-hot tables' columns.

A dataset is written into a hidden temporary directory beside its destination and renamed
into place last, so a half-written dataset never looks complete. ``checksums.json`` holds
the BLAKE2b digest of every file, checked by ``hotrec info --verify``.

Opening validates structure (meta fields, array shapes and dtypes). The first time a split
is opened its ids are checked against the table sizes (and labels against [0, 1]) in one
pass (data/ranges.py); the result is cached in ``.hotrec-checked.json`` keyed by each file's
size and mtime, so later opens cost nothing until a file changes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotrec.data.bag_layout import BagLayout, bag_files
from hotrec.data.ranges import check_ranges
from hotrec.errors import HotrecError
from hotrec.fileio import read_json_object
from hotrec.integrity import write_checksums
from hotrec.types import Schema

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META = "meta.json"


def sparse_dtype_for(schema: Schema) -> np.dtype:
    """int32 while every table fits, else int64."""
    biggest = max((t.rows for t in schema.tables), default=0)
    return np.dtype(np.int32 if biggest < 2**31 else np.int64)


class DatasetWriter:
    """Writes a dataset directory atomically.

    with DatasetWriter(out) as w:
        arrays = w.create_split("train", n, schema)   # writable memmaps
        ...fill arrays...
        w.commit(schema, meta)                      # meta.json, then rename into place
    Leaving the block without commit (an exception) removes the temporary directory.
    """

    def __init__(self, out_dir: str | os.PathLike, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise HotrecError(f"{self.out_dir} already exists (use --overwrite to replace it)")
        if self.out_dir.exists() and not _replaceable(self.out_dir):
            raise HotrecError(
                f"{self.out_dir} is not a hotrec dataset: --overwrite only replaces a dataset "
                "directory (one with meta.json) or an empty one"
            )
        self.tmp_dir = self.out_dir.parent / f".{self.out_dir.name}.partial-{os.getpid()}"
        self.splits: dict[str, int] = {}
        self._arrays: list[np.memmap] = []
        self._committed = False

    def __enter__(self) -> DatasetWriter:
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(self.out_dir)
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._committed:
            self._arrays.clear()
            shutil.rmtree(self.tmp_dir, ignore_errors=True)

    @property
    def path(self) -> Path:
        """Where files go before the commit (for extras such as vocabularies)."""
        return self.tmp_dir

    def create_split(
        self, split: str, n: int, schema: Schema, bag_values: dict[int, int] | None = None
    ) -> SplitArrays:
        """Allocate writable memmaps for one split of n rows; `bag_values` gives each bag
        table's (schema index ->) total ids in the split, whose values and offsets the
        caller fills."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        d = self.tmp_dir / split
        d.mkdir(exist_ok=True)
        dtype = sparse_dtype_for(schema)
        bags = []
        for t in schema.bag_tables:
            values, offsets = bag_files(t)
            total = (bag_values or {}).get(t)
            if total is None:
                raise ValueError(f"no size given for the ids of bag table {t}")
            bags.append(
                (
                    np.lib.format.open_memmap(d / values, "w+", dtype, (total,)),
                    np.lib.format.open_memmap(d / offsets, "w+", np.int64, (n + 1,)),
                )
            )
        arrays = SplitArrays(
            dense=np.lib.format.open_memmap(
                d / "dense.npy", "w+", np.float32, (n, schema.num_dense)
            ),
            sparse=np.lib.format.open_memmap(
                d / "sparse.npy", "w+", dtype, (n, len(schema.one_hot_tables))
            ),
            label=np.lib.format.open_memmap(d / "label.npy", "w+", np.float32, (n,)),
            bags=tuple(bags),
            layout=BagLayout.of(schema),
        )
        self._arrays += [arrays.dense, arrays.sparse, arrays.label, *(a for b in bags for a in b)]
        self.splits[split] = n
        return arrays

    def commit(self, schema: Schema, meta: dict) -> Path:
        """Flush arrays, write meta.json, and rename the directory into place."""
        for a in self._arrays:
            a.flush()
        self._arrays.clear()
        for name in self.splits:  # data on disk before the rename makes it look complete
            for f in (self.tmp_dir / name).glob("*.npy"):
                _fsync(f)
        full = {
            "format_version": FORMAT_VERSION,
            "schema": schema.to_dict(),
            "splits": dict(self.splits),
            "sparse_dtype": str(sparse_dtype_for(schema)),
            **meta,
        }
        (self.tmp_dir / META).write_text(json.dumps(full, indent=2) + "\n")
        _fsync(self.tmp_dir / META)
        files = [str(f.relative_to(self.tmp_dir)) for f in self.tmp_dir.rglob("*") if f.is_file()]
        write_checksums(self.tmp_dir, files)
        if self.out_dir.exists():
            old = self.out_dir.parent / f".{self.out_dir.name}.old-{os.getpid()}"
            os.replace(self.out_dir, old)
            os.replace(self.tmp_dir, self.out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp_dir, self.out_dir)
        self._committed = True
        return self.out_dir


def _replaceable(path: Path) -> bool:
    """--overwrite may replace a dataset directory or an empty directory, nothing else."""
    return path.is_dir() and ((path / META).is_file() or not any(path.iterdir()))


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove_abandoned(out_dir: Path) -> None:
    """Remove temporary directories of earlier writes to out_dir whose process is gone."""
    for d in out_dir.parent.glob(f".{out_dir.name}.partial-*"):
        pid = d.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class SplitArrays:
    """One split's arrays: dense [N, F_d] float32, sparse [N, T] int32/64, label [N] float32;
    with bag tables, sparse [N, T_one_hot] and per bag table (values [L], offsets [N + 1])."""

    dense: np.ndarray
    sparse: np.ndarray
    label: np.ndarray
    table_rows: np.ndarray | None = None  # [T] when known: the loader checks every batch
    source: str = ""  # the split directory, for error messages
    bags: tuple[tuple[np.ndarray, np.ndarray], ...] = ()  # (values, offsets) per bag table
    layout: BagLayout | None = None  # None: every table one-hot, sparse [N, T]

    def __len__(self) -> int:
        return self.label.shape[0]

    def check_ids(self, ids: np.ndarray, rows: slice | np.ndarray) -> None:
        """Raise naming the file, row, table and value when an id of `ids` (the rows `rows`
        of the split) lies outside its table: a per-batch guard for files changed after the
        cached range check."""
        if self.table_rows is None or ids.size == 0:
            return
        columns = list(self.layout.one_hot) if self.layout else list(range(ids.shape[1]))
        limits = self.table_rows[columns]
        if ids.min() >= 0 and (ids.max(axis=0) < limits).all():
            return
        bad = (ids < 0) | (ids >= limits)
        row, c = (int(x[0]) for x in np.nonzero(bad))
        where = (rows.start or 0) + row if isinstance(rows, slice) else int(rows[row])
        raise HotrecError(
            f"{self.source}/sparse.npy row {where}: id {int(ids[row, c])} of table "
            f"{columns[c]} is outside its {int(limits[c])} rows (meta.json); the dataset is "
            "damaged or its meta.json does not match it"
        )

    def check_bag_ids(self, j: int, values: np.ndarray) -> None:
        """The same guard for the ids of bag table number j (in layout.bag order)."""
        if self.table_rows is None or values.size == 0:
            return
        t = self.layout.bag[j]
        low, high = int(values.min()), int(values.max())
        if low >= 0 and high < self.table_rows[t]:
            return
        raise HotrecError(
            f"{self.source}/{bag_files(t)[0]}: id {low if low < 0 else high} of table {t} is "
            f"outside its {int(self.table_rows[t])} rows (meta.json); the dataset is damaged "
            "or its meta.json does not match it"
        )


@dataclass
class Dataset:
    """A prepared dataset opened read-only; splits are zero-copy memory maps."""

    path: Path
    meta: dict
    schema: Schema

    def split(self, name: str) -> SplitArrays:
        if name not in self.meta["splits"]:
            raise HotrecError(f"{self.path} has no split {name!r}")
        d, n = self.path / name, self.meta["splits"][name]
        bags = tuple(
            tuple(_open_array(d / f) for f in bag_files(t)) for t in self.schema.bag_tables
        )
        arrays = SplitArrays(
            dense=_open_array(d / "dense.npy"),
            sparse=_open_array(d / "sparse.npy"),
            label=_open_array(d / "label.npy"),
            table_rows=np.asarray(self.schema.table_rows, dtype=np.int64),
            source=str(d),
            bags=bags,
            layout=BagLayout.of(self.schema),
        )
        expect = {
            "dense.npy": (arrays.dense, (n, self.schema.num_dense), "f"),
            "sparse.npy": (arrays.sparse, (n, len(self.schema.one_hot_tables)), "iu"),
            "label.npy": (arrays.label, (n,), "f"),
        }
        for t, (values, offsets) in zip(self.schema.bag_tables, bags, strict=True):
            names = bag_files(t)
            expect[names[0]] = (values, (values.shape[0],) if values.ndim == 1 else (-1,), "iu")
            expect[names[1]] = (offsets, (n + 1,), "i")
        for key, (array, shape, kinds) in expect.items():
            if array.shape != shape:
                raise HotrecError(f"{d}/{key} has shape {array.shape}, meta.json says {shape}")
            if array.dtype.kind not in kinds:
                raise HotrecError(f"{d}/{key} holds {array.dtype}, not {_KIND_NAMES[kinds]}")
        for t, (values, offsets) in zip(self.schema.bag_tables, bags, strict=True):
            if int(offsets[0]) != 0 or int(offsets[-1]) != values.shape[0]:
                raise HotrecError(
                    f"{d}/{bag_files(t)[1]} does not span {bag_files(t)[0]} (offsets "
                    f"{int(offsets[0])}..{int(offsets[-1])}, {values.shape[0]} ids)"
                )
        check_ranges(self.path, self.schema, name, arrays)
        return arrays

    def has_split(self, name: str) -> bool:
        return self.meta["splits"].get(name, 0) > 0


def _open_array(path: Path) -> np.ndarray:
    """A read-only memory map of one .npy (never unpickles); one line naming a damaged file."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise HotrecError(f"{path}: damaged dataset array ({e}); prepare it again") from None


_KIND_NAMES = {"f": "floating-point values", "iu": "integer ids", "i": "signed integers"}


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset directory, with a one-line error when it is missing or incomplete."""
    p = Path(path)
    meta_path = p / META
    if not p.exists():
        raise HotrecError(f"{p} does not exist (a dataset directory from 'hotrec prepare/synth')")
    if not meta_path.is_file():
        raise HotrecError(f"{p} is not a hotrec dataset (no {META}); run 'hotrec prepare' first")
    meta = read_json_object(meta_path)
    if meta.get("format_version") != FORMAT_VERSION:
        raise HotrecError(f"{p}: unsupported dataset format {meta.get('format_version')!r}")
    try:
        schema = Schema.from_dict(meta.get("schema"))
    except ValueError as e:
        raise HotrecError(f"{meta_path} is damaged: {e}") from None
    splits = meta.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise HotrecError(f"{meta_path} is damaged: 'splits' is missing or not a map of sizes")
    for name, n in splits.items():
        if name not in SPLITS:
            raise HotrecError(f"{meta_path} is damaged: unknown split {name!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise HotrecError(f"{meta_path} is damaged: split {name} has {n!r} rows")
    return Dataset(path=p, meta=meta, schema=schema)
