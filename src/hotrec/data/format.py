"""The dataset directory: meta.json + per-split dense/sparse/label .npy memmaps.

A dataset is written into a hidden temporary directory beside its destination and renamed
into place last, so a half-written dataset never looks complete. ``checksums.json`` holds
the BLAKE2b digest of every file, checked by ``hotrec info --verify``.

Opening validates structure (meta fields, array shapes and dtypes). The first time a split
is opened its ids are checked against the table sizes (and labels against [0, 1]) in one
pass; the result is cached in ``.hotrec-checked.json`` keyed by each file's size and mtime,
so later opens cost nothing until a file changes.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotrec.errors import HotrecError
from hotrec.fileio import read_json_object, write_json_atomic
from hotrec.integrity import write_checksums
from hotrec.types import Schema

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
META = "meta.json"
CHECKED = ".hotrec-checked.json"  # cached id-range checks (not part of the dataset)
_SCAN_ROWS = 1 << 20  # rows per chunk of the range scan


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

    def create_split(self, split: str, n: int, schema: Schema) -> SplitArrays:
        """Allocate writable memmaps for one split of n rows."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}")
        d = self.tmp_dir / split
        d.mkdir(exist_ok=True)
        arrays = SplitArrays(
            dense=np.lib.format.open_memmap(
                d / "dense.npy", "w+", np.float32, (n, schema.num_dense)
            ),
            sparse=np.lib.format.open_memmap(
                d / "sparse.npy", "w+", sparse_dtype_for(schema), (n, schema.num_tables)
            ),
            label=np.lib.format.open_memmap(d / "label.npy", "w+", np.float32, (n,)),
        )
        self._arrays += [arrays.dense, arrays.sparse, arrays.label]
        self.splits[split] = n
        return arrays

    def commit(self, schema: Schema, meta: dict) -> Path:
        """Flush arrays, write meta.json, and rename the directory into place."""
        for a in self._arrays:
            a.flush()
        self._arrays.clear()
        for name in self.splits:  # data on disk before the rename makes it look complete
            for f in ("dense.npy", "sparse.npy", "label.npy"):
                _fsync(self.tmp_dir / name / f)
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
    """One split's arrays: dense [N, F_d] float32, sparse [N, T] int32/64, label [N] float32."""

    dense: np.ndarray
    sparse: np.ndarray
    label: np.ndarray
    table_rows: np.ndarray | None = None  # [T] when known: the loader checks every batch
    source: str = ""  # the split directory, for error messages

    def __len__(self) -> int:
        return self.label.shape[0]

    def check_ids(self, ids: np.ndarray, rows: slice | np.ndarray) -> None:
        """Raise naming the file, row, table and value when an id of `ids` (the rows `rows`
        of the split) lies outside its table: a per-batch guard for files changed after the
        cached range check."""
        if self.table_rows is None or ids.size == 0:
            return
        if ids.min() >= 0 and (ids.max(axis=0) < self.table_rows).all():
            return
        bad = (ids < 0) | (ids >= self.table_rows)
        row, t = (int(x[0]) for x in np.nonzero(bad))
        where = (rows.start or 0) + row if isinstance(rows, slice) else int(rows[row])
        raise HotrecError(
            f"{self.source}/sparse.npy row {where}: id {int(ids[row, t])} of table "
            f"{t} is outside its {int(self.table_rows[t])} rows (meta.json); the dataset is "
            "damaged or its meta.json does not match it"
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
        arrays = SplitArrays(
            dense=_open_array(d / "dense.npy"),
            sparse=_open_array(d / "sparse.npy"),
            label=_open_array(d / "label.npy"),
            table_rows=np.asarray(self.schema.table_rows, dtype=np.int64),
            source=str(d),
        )
        expect = {
            "dense": ((n, self.schema.num_dense), "f"),
            "sparse": ((n, self.schema.num_tables), "iu"),
            "label": ((n,), "f"),
        }
        for key, (shape, kinds) in expect.items():
            array = getattr(arrays, key)
            if array.shape != shape:
                raise HotrecError(f"{d}/{key}.npy has shape {array.shape}, meta.json says {shape}")
            if array.dtype.kind not in kinds:
                raise HotrecError(f"{d}/{key}.npy holds {array.dtype}, not {_KIND_NAMES[kinds]}")
        _check_ranges(self, name, arrays)
        return arrays

    def has_split(self, name: str) -> bool:
        return self.meta["splits"].get(name, 0) > 0


def _open_array(path: Path) -> np.ndarray:
    """A read-only memory map of one .npy (never unpickles); one line naming a damaged file."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise HotrecError(f"{path}: damaged dataset array ({e}); prepare it again") from None


_KIND_NAMES = {"f": "floating-point values", "iu": "integer ids"}


def _stamp(arrays_dir: Path) -> list[list[int]]:
    """Size and mtime of a split's files: a cached check holds while these are unchanged."""
    out = []
    for f in ("sparse.npy", "label.npy"):
        st = (arrays_dir / f).stat()
        out.append([st.st_size, st.st_mtime_ns])
    return out


def _check_ranges(ds: Dataset, split: str, arrays: SplitArrays) -> None:
    """Per table min/max id and the label range, computed once per file version and cached."""
    cache_file = ds.path / CHECKED
    stamp = _stamp(ds.path / split)
    try:
        cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
        entry = cache.get(split) if isinstance(cache, dict) else None
    except (OSError, ValueError):
        cache, entry = {}, None
    if not (isinstance(entry, dict) and entry.get("stamp") == stamp):
        entry = {"stamp": stamp, **_scan(arrays)}
        cache = cache if isinstance(cache, dict) else {}
        cache[split] = entry
        try:  # a read-only dataset is checked again next time
            write_json_atomic(cache_file, cache, indent=None)
        except OSError:
            pass
    src = ds.path / split
    try:
        lows, highs = [int(x) for x in entry["min"]], [int(x) for x in entry["max"]]
        label_low, label_high = float(entry["label"][0]), float(entry["label"][1])
    except (KeyError, TypeError, ValueError, IndexError):
        cache_file.unlink(missing_ok=True)
        raise HotrecError(
            f"{cache_file} is damaged and was removed; open the dataset again"
        ) from None
    for t, table in enumerate(ds.schema.tables):
        if len(arrays) and (lows[t] < 0 or highs[t] >= table.rows):
            value = lows[t] if lows[t] < 0 else highs[t]
            raise HotrecError(
                f"{src}/sparse.npy: table {table.name} holds id {value}, outside its "
                f"{table.rows} rows in meta.json; the dataset is damaged or meta.json does not "
                "match it"
            )
    if len(arrays) and not (0.0 <= label_low and label_high <= 1.0):
        value = label_low if not 0.0 <= label_low else label_high
        raise HotrecError(f"{src}/label.npy holds {value}, not a label in [0, 1]")


def _scan(arrays: SplitArrays) -> dict:
    """One chunked pass: per-table min and max id, and the smallest and largest label."""
    tables = arrays.sparse.shape[1]
    lows = np.full(tables, np.iinfo(np.int64).max, dtype=np.int64)
    highs = np.full(tables, np.iinfo(np.int64).min, dtype=np.int64)
    label = [np.inf, -np.inf]
    for a in range(0, len(arrays), _SCAN_ROWS):
        ids = np.asarray(arrays.sparse[a : a + _SCAN_ROWS])
        if ids.size:
            lows = np.minimum(lows, ids.min(axis=0))
            highs = np.maximum(highs, ids.max(axis=0))
        lab = np.asarray(arrays.label[a : a + _SCAN_ROWS])
        if lab.size:
            if not np.isfinite(lab).all():
                label = [float("nan"), float("nan")]
                break
            label = [min(label[0], float(lab.min())), max(label[1], float(lab.max()))]
    return {"min": lows.tolist(), "max": highs.tolist(), "label": label}


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset directory, with a one-line error when it is missing or incomplete."""
    p = Path(path)
    meta_path = p / META
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
