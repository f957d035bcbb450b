"""The dataset directory: meta.json + per-split dense/sparse/label .npy memmaps.

A multi-hot (bag) table t is stored jagged beside them: ``bag-<t>-values.npy`` (every row's
ids, row after row) and ``bag-<t>-offsets.npy`` ([N + 1] int64: row i's ids are
values[offsets[i]:offsets[i + 1]]); sparse.npy then holds only the one-hot tables' columns.

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


def require_one_hot(schema: Schema, what: str) -> None:
    """One-line refusal for code that does not take multi-hot (bag) tables yet."""
    if schema.has_bags:
        bags = ", ".join(schema.tables[t].name for t in schema.bag_tables)
        raise HotrecError(f"{what} does not take multi-hot tables yet ({bags} in this dataset)")


def bag_files(table: int) -> tuple[str, str]:
    """File names of a bag table's values and offsets inside a split directory."""
    return f"bag-{table}-values.npy", f"bag-{table}-offsets.npy"


@dataclass(frozen=True)
class BagLayout:
    """Where each table's ids are in a split with bag tables: `one_hot` (schema indices of
    sparse.npy's columns) and `bag` (schema indices of the bag arrays, in order)."""

    num_tables: int
    one_hot: tuple[int, ...]
    bag: tuple[int, ...]

    @classmethod
    def of(cls, schema: Schema) -> BagLayout | None:
        if not schema.has_bags:
            return None
        return cls(schema.num_tables, tuple(schema.one_hot_tables), tuple(schema.bag_tables))


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


_KIND_NAMES = {"f": "floating-point values", "iu": "integer ids", "i": "signed integers"}


def _stamp(arrays_dir: Path) -> list[list[int]]:
    """Size and mtime of a split's files: a cached check holds while these are unchanged."""
    out = []
    bags = sorted(f.name for f in arrays_dir.glob("bag-*.npy"))
    for f in ("sparse.npy", "label.npy", *bags):
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
    for t, ordered in zip(ds.schema.bag_tables, entry.get("offsets_ordered", ()), strict=False):
        if not ordered:
            raise HotrecError(f"{src}/{bag_files(t)[1]}: offsets decrease; the dataset is damaged")
    for t, table in enumerate(ds.schema.tables):
        if len(arrays) and (lows[t] < 0 or highs[t] >= table.rows):
            value = lows[t] if lows[t] < 0 else highs[t]
            where = bag_files(t)[0] if table.is_bag else "sparse.npy"
            raise HotrecError(
                f"{src}/{where}: table {table.name} holds id {value}, outside its "
                f"{table.rows} rows in meta.json; the dataset is damaged or meta.json does not "
                "match it"
            )
    if len(arrays) and not (0.0 <= label_low and label_high <= 1.0):
        value = label_low if not 0.0 <= label_low else label_high
        raise HotrecError(f"{src}/label.npy holds {value}, not a label in [0, 1]")


def _scan(arrays: SplitArrays) -> dict:
    """One chunked pass: per-table (schema order) min and max id, the smallest and largest
    label, and whether each bag table's offsets never decrease."""
    columns = arrays.sparse.shape[1]
    lows = np.full(columns, np.iinfo(np.int64).max, dtype=np.int64)
    highs = np.full(columns, np.iinfo(np.int64).min, dtype=np.int64)
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
    if arrays.layout is None:
        return {"min": lows.tolist(), "max": highs.tolist(), "label": label}
    n = arrays.layout.num_tables
    low, high = [0] * n, [0] * n  # a bag table without ids holds nothing out of range
    for c, t in enumerate(arrays.layout.one_hot):
        low[t], high[t] = int(lows[c]), int(highs[c])
    ordered = []
    for t, (values, offsets) in zip(arrays.layout.bag, arrays.bags, strict=True):
        lo, hi, ok = np.iinfo(np.int64).max, np.iinfo(np.int64).min, True
        for a in range(0, values.shape[0], _SCAN_ROWS):
            chunk = np.asarray(values[a : a + _SCAN_ROWS])
            lo, hi = min(lo, int(chunk.min())), max(hi, int(chunk.max()))
        for a in range(0, offsets.shape[0], _SCAN_ROWS):
            ok = ok and bool(
                (np.diff(np.asarray(offsets[max(a - 1, 0) : a + _SCAN_ROWS])) >= 0).all()
            )
        if values.shape[0]:
            low[t], high[t] = lo, hi
        ordered.append(ok)
    return {"min": low, "max": high, "label": label, "offsets_ordered": ordered}


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
