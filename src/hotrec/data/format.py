"""The dataset directory: meta.json + per-split dense/sparse/label .npy memmaps.

A dataset is written into a hidden temporary directory beside its destination and renamed
into place last, so a half-written dataset never looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotrec.errors import HotrecError
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

    def __len__(self) -> int:
        return self.label.shape[0]


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
        try:
            arrays = SplitArrays(
                dense=np.load(d / "dense.npy", mmap_mode="r"),
                sparse=np.load(d / "sparse.npy", mmap_mode="r"),
                label=np.load(d / "label.npy", mmap_mode="r"),
            )
        except (OSError, ValueError) as e:
            raise HotrecError(f"{d}: damaged dataset split ({e}); prepare it again") from None
        expect = {
            "dense": (n, self.schema.num_dense),
            "sparse": (n, self.schema.num_tables),
            "label": (n,),
        }
        for key, shape in expect.items():
            if getattr(arrays, key).shape != shape:
                raise HotrecError(
                    f"{d}/{key}.npy has shape {getattr(arrays, key).shape}, meta.json says {shape}"
                )
        return arrays

    def has_split(self, name: str) -> bool:
        return self.meta["splits"].get(name, 0) > 0


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Open a dataset directory, with a one-line error when it is missing or incomplete."""
    p = Path(path)
    meta_path = p / META
    if not meta_path.is_file():
        raise HotrecError(f"{p} is not a hotrec dataset (no {META}); run 'hotrec prepare' first")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise HotrecError(f"{meta_path} is not valid JSON: {e}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise HotrecError(f"{p}: unsupported dataset format {meta.get('format_version')!r}")
    try:
        return Dataset(path=p, meta=meta, schema=Schema.from_dict(meta["schema"]))
    except (KeyError, TypeError, ValueError) as e:
        raise HotrecError(f"{meta_path} is damaged (bad or missing {e})") from None
