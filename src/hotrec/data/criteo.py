"""Criteo Kaggle (train.txt) and Terabyte (day_0 .. day_23) -> dataset directory.

Each line: label (0/1), I1..I13 (integers), C1..C26 (hex of 32-bit values), tab-separated;
any field may be empty. Dense: missing or negative -> 0, then log(1 + x). Categorical: a
frequency vocabulary per table (counts over all written rows, as the DLRM reference) or
hashing into a fixed number of rows.

Pass 1 streams the input in blocks, parsed and encoded on a thread pool (tsv.parse_rows,
KeyIndex), and spools label, dense values and provisional per-table codes to flat files in
the writer's temporary directory. Pass 2, once the row count is known, maps codes to ids and
copies the rows into the split arrays chunk by chunk, then deletes the spool. Splits follow
the DLRM reference: Kaggle is cut into 7 equal "days" in file order (days 0-5 train, day 6
halves = test / val); Terabyte trains on days 0..D-2 (negatives optionally down-sampled) and
halves day D-1 into test / val (test first, as the reference). Rows accounting: rows_read == rows_written + rows_rejected
(malformed) + rows_dropped (down-sampled negatives, also in meta "negatives_dropped").
"""

from __future__ import annotations

import gc
import hashlib
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hotrec.data.format import SPLITS, DatasetWriter
from hotrec.data.keyindex import Mapper, workers
from hotrec.data.rows import REPAIR_KINDS, RowReport
from hotrec.data.tsv import BLOCK_BYTES, Block, Rows, parse_rows, read_blocks
from hotrec.errors import HotrecError
from hotrec.progress import console, make_progress
from hotrec.types import Schema, TableSpec

DENSE_NAMES = tuple(f"I{i}" for i in range(1, 14))
TABLE_NAMES = tuple(f"C{i}" for i in range(1, 27))
FIELD_NAMES = ("label", *DENSE_NAMES, *TABLE_NAMES)


def dense_transform(ints: np.ndarray) -> np.ndarray:
    """Criteo integer fields -> model inputs: negative -> 0, then log(1 + x) in float32."""
    return np.log1p(np.maximum(ints, 0).astype(np.float32))


COPY_ROWS = 1 << 16  # rows per pass-2 copy step


@dataclass
class Encoded:
    """One block ready for the spool."""

    rows: Rows
    dense: np.ndarray  # [n, 13] float32, log1p applied
    codes: np.ndarray  # [n, 26] provisional codes (vocabulary) or ids (hashing)


def encoded_blocks(
    path: Path, chunk_bytes: int, hasher, mapper: Mapper
) -> Iterator[tuple[Encoded, int]]:
    """(block, raw bytes read) in file order, parsed and encoded on a thread pool (numpy
    releases the GIL, so the threads keep all cores busy)."""
    threads = workers()

    def work(block: Block, turn: int) -> Encoded:
        rows = parse_rows(block, FIELD_NAMES, len(DENSE_NAMES))
        dense = dense_transform(rows.ints)
        return Encoded(rows, dense, mapper.encode(rows.keys, turn))

    blocks = read_blocks(path, min(chunk_bytes, BLOCK_BYTES), hasher)
    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for turn, (block, pos) in enumerate(blocks):
            pending.append((pool.submit(work, block, turn), pos))
            if len(pending) > 2 * threads:  # bounded read-ahead: memory independent of file size
                future, at = pending.popleft()
                yield future.result(), at
        while pending:
            future, at = pending.popleft()
            yield future.result(), at


class Spool:
    """Pass-1 rows in flat files: label float32, dense float32 [13], codes [26]; label and
    dense already have the layout of the split arrays, so pass 2 copies their bytes."""

    def __init__(self, directory: Path, code_dtype: np.dtype) -> None:
        directory.mkdir()
        self.directory, self.rows = directory, 0
        self.layout = {
            "label": (np.dtype(np.float32), 1),
            "dense": (np.dtype(np.float32), len(DENSE_NAMES)),
            "codes": (code_dtype, len(TABLE_NAMES)),
        }
        self.files = {k: open(directory / k, "wb") for k in self.layout}  # noqa: SIM115

    def append(self, label: np.ndarray, dense: np.ndarray, codes: np.ndarray) -> None:
        for name, a in (("label", label), ("dense", dense), ("codes", codes)):
            self.files[name].write(np.ascontiguousarray(a, dtype=self.layout[name][0]).data)
        self.rows += len(label)

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of one file: [rows, width]."""
        dtype, width = self.layout[name]
        offset = start * dtype.itemsize * width
        a = np.fromfile(self.directory / name, dtype, (stop - start) * width, offset=offset)
        return a.reshape(-1, width)  # [rows, width]

    def copy(self, name: str, start: int, stop: int, target: np.memmap, at: int) -> None:
        """Rows [start, stop) of one file -> the .npy file behind target, from row `at`."""
        row = self.layout[name][0].itemsize * self.layout[name][1]
        with open(self.directory / name, "rb") as src, open(target.filename, "r+b") as dst:
            copy_bytes(src.fileno(), start * row, dst.fileno(), target.offset + at * row,
                       (stop - start) * row)  # fmt: skip


class FirstPass:
    """Pass 1 over one or more files: row report, checksum, spool, counts and progress."""

    def __init__(self, writer: DatasetWriter, mapper: Mapper, strict: bool, files: list[Path]):
        self.report, self.mapper, self.hasher = RowReport(strict=strict), mapper, hashlib.sha256()
        self.spool = Spool(writer.path / "pass1", mapper.code_dtype)
        self.progress = make_progress()
        total_mb = max(sum(p.stat().st_size for p in files) / 1e6, 1e-6)
        self.task = self.progress.add_task("reading MB", total=total_mb, rate="", info="")
        self.done_mb, self.start = 0.0, time.perf_counter()

    def __enter__(self) -> FirstPass:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()
        self.spool.close()

    def read(self, path: Path, chunk_bytes: int, keep: Callable | None = None) -> tuple[int, int]:
        """Spool one file's rows; `keep(label) -> mask` down-samples. Returns its spool rows."""
        line, start = 1, self.spool.rows
        for block, pos in encoded_blocks(path, chunk_bytes, self.hasher, self.mapper):
            rows, dense, codes = block.rows, block.dense, block.codes
            self._report(rows.issues, path, line)
            self.report.rows_read += rows.num_lines
            line += rows.num_lines
            label = rows.label
            if keep is not None:
                mask = keep(label)
                self.mapper.uncount(codes[~mask])
                self.report.rows_dropped += int(len(mask) - mask.sum())
                label, dense, codes = label[mask], dense[mask], codes[mask]
            self.spool.append(label.astype(np.float32), dense, codes)
            self.report.rows_written += len(label)
            self._advance(self.done_mb + pos / 1e6)
        self.done_mb += path.stat().st_size / 1e6
        return start, self.spool.rows

    def _report(self, issues: dict, path: Path, line: int) -> None:
        """Count (or, strict, raise for) a block's issues, earliest line first."""
        for kind, (count, first, detail) in sorted(issues.items(), key=lambda kv: kv[1][1]):
            if kind in REPAIR_KINDS:
                self.report.repair(kind, str(path), line + first, count)
            else:
                self.report.reject(kind, str(path), line + first, count, detail)

    def _advance(self, mb: float) -> None:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        rate, rows = f"{mb / seconds:.0f} MB/s", f"{self.report.rows_read / seconds:,.0f} rows/s"
        self.progress.update(self.task, completed=mb, rate=rate, info=rows)


@dataclass
class Segment:
    """Spool rows [start, stop): one day's part of one split."""

    split: str
    day: int
    start: int
    stop: int


def halves(day: int, start: int, stop: int) -> list[Segment]:
    """A day cut in halves as the DLRM reference does (np.array_split(day, 2) -> test, val):
    test first, taking the odd row, then val."""
    mid = start + (stop - start + 1) // 2
    return [Segment("test", day, start, mid), Segment("val", day, mid, stop)]


def kaggle_segments(rows: int, days: int = 7) -> list[Segment]:
    """Equal days in file order (the first days take the remainder); the last -> val/test."""
    size, extra = divmod(rows, days)
    bounds = np.cumsum([0] + [size + (d < extra) for d in range(days)]).tolist()
    train = [Segment("train", d, bounds[d], bounds[d + 1]) for d in range(days - 1)]
    return train + halves(days - 1, bounds[-2], bounds[-1])


def write_splits(
    writer: DatasetWriter, first: FirstPass, segments: list[Segment], meta: dict
) -> Path:
    """Pass 2: vocabularies, split arrays from the spool, meta.json, atomic commit."""
    if first.report.rows_written == 0:
        raise HotrecError(f"no valid rows to write ({first.report.summary()})")
    table_rows = first.mapper.finish(writer.path / "vocab")
    tables = tuple(TableSpec(n, r) for n, r in zip(TABLE_NAMES, table_rows, strict=True))
    schema = Schema(DENSE_NAMES, tables)
    days, jobs = [], []
    for split in SPLITS:
        parts = [s for s in segments if s.split == split]
        arrays = writer.create_split(split, sum(s.stop - s.start for s in parts), schema)
        at = 0
        for seg in parts:
            days.append(
                {"day": seg.day, "split": split, "start": at, "stop": at + seg.stop - seg.start}
            )
            for lo in range(seg.start, seg.stop, COPY_ROWS):
                jobs.append((arrays, at + lo - seg.start, lo, min(lo + COPY_ROWS, seg.stop)))
            at += seg.stop - seg.start

    def job(args: tuple) -> int:
        arrays, at, lo, hi = args
        first.spool.copy("label", lo, hi, arrays.label, at)
        first.spool.copy("dense", lo, hi, arrays.dense, at)
        write_rows(arrays.sparse, at, first.mapper.ids(first.spool.read("codes", lo, hi)))
        return hi - lo

    progress = make_progress()
    task = progress.add_task("writing rows", total=first.spool.rows, rate="", info="")
    with progress, ThreadPoolExecutor(workers()) as pool:
        for rows in pool.map(job, jobs):
            progress.advance(task, rows)
    shutil.rmtree(first.spool.directory)
    first.report.check()
    console.print(f"criteo: {first.report.summary()}")
    meta = {**meta, "input_checksum": first.hasher.hexdigest(), "rows": first.report.to_dict()}
    return writer.commit(schema, {**meta, "days": days})


def write_rows(target: np.memmap, at: int, values: np.ndarray) -> None:
    """Write rows into the file behind an .npy memmap (pwrite keeps them out of our RSS)."""
    values = np.ascontiguousarray(values, dtype=target.dtype)
    row_bytes = target.dtype.itemsize * int(np.prod(target.shape[1:]))
    fd = os.open(target.filename, os.O_WRONLY)
    try:
        os.pwrite(fd, values.data, target.offset + at * row_bytes)
    finally:
        os.close(fd)


def copy_bytes(src: int, src_at: int, dst: int, dst_at: int, size: int) -> None:
    """Copy a byte range between files, in the kernel where it can (copy_file_range)."""
    while size > 0:
        try:
            done = os.copy_file_range(src, dst, size, src_at, dst_at)
        except (AttributeError, OSError):  # not Linux, or not supported by the file system
            data = os.pread(src, min(size, 8 << 20), src_at)
            done = os.pwrite(dst, data, dst_at)
        if done <= 0:
            raise HotrecError("spool file ended early while copying (disk full?)")
        src_at, dst_at, size = src_at + done, dst_at + done, size - done


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while streaming: the loops allocate many short-lived
    arrays and create no cycles, and with torch imported each collection scans a lot."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_options(min_count: int, hash_rows: int | None) -> None:
    if min_count < 1:
        raise HotrecError(f"--min-count must be at least 1, got {min_count}")
    if hash_rows is not None and hash_rows < 2:
        raise HotrecError(f"--hash-rows must be at least 2, got {hash_rows}")


def prepare_criteo_kaggle(
    path: Path, out: Path, *, min_count: int = 1, hash_rows: int | None = None,
    strict: bool = False, overwrite: bool = False, chunk_bytes: int = 64 << 20,
) -> Path:  # fmt: skip
    """Criteo Kaggle train.txt[.gz] -> dataset directory (7 days: 0-5 train, 6 val/test).

    chunk_bytes: bytes read per block (blocks above 8 MiB bring nothing and are capped); memory
    stays at a few blocks per thread, independent of the file size, plus the vocabularies."""
    path = kaggle_file(Path(path))
    _check_options(min_count, hash_rows)
    options = {"min_count": min_count, "hash_rows": hash_rows, "strict": strict}
    with gc_paused(), DatasetWriter(out, overwrite) as writer:
        with FirstPass(writer, Mapper(TABLE_NAMES, hash_rows, min_count), strict, [path]) as first:
            first.read(path, chunk_bytes)
        meta = {"source": "criteo-kaggle", "options": options, "files": [path.name]}
        return write_splits(writer, first, kaggle_segments(first.spool.rows), meta)


def kaggle_file(path: Path) -> Path:
    """The Kaggle train.txt[.gz] at `path`, or inside the directory `path`."""
    if path.is_dir():
        inside = [p for p in (path / "train.txt", path / "train.txt.gz") if p.is_file()]
        if not inside:
            raise HotrecError(
                f"{path} is a directory without train.txt or train.txt.gz: give Criteo "
                "Kaggle's train.txt (or the directory holding it)"
            )
        return inside[0]
    if not path.is_file():
        raise HotrecError(f"{path} not found (expected Criteo Kaggle train.txt or train.txt.gz)")
    return path


def day_files(directory: Path, days: int) -> list[Path]:
    """day_0 .. day_{days-1}, each plain or .gz; a one-line error names the first missing."""
    if not directory.is_dir():
        raise HotrecError(f"{directory} is not a directory of Criteo Terabyte day_N files")
    files = []
    for d in range(days):
        found = [p for p in (directory / f"day_{d}", directory / f"day_{d}.gz") if p.is_file()]
        if not found:
            if d < 2:  # fewer than the 2 days a dataset needs: --days would not help
                raise HotrecError(
                    f"{directory} holds no Criteo Terabyte day_{d} (or day_{d}.gz): give the "
                    "directory with day_0 .. day_23"
                )
            raise HotrecError(f"{directory}: day_{d} (or day_{d}.gz) not found; try --days {d}")
        files.append(found[0])
    return files


def prepare_criteo_terabyte(
    directory: Path, out: Path, *, days: int = 24, negative_rate: float = 1.0, seed: int = 0,
    min_count: int = 1, hash_rows: int | None = None, strict: bool = False,
    overwrite: bool = False, chunk_bytes: int = 64 << 20,
) -> Path:  # fmt: skip
    """Criteo Terabyte day_0 .. day_{days-1} -> dataset directory (the last day = val/test).

    Training negatives are kept with probability negative_rate (seeded per day: deterministic
    and independent of chunking); they count in rows_dropped, not as malformed rows."""
    directory = Path(directory)
    _check_options(min_count, hash_rows)
    if days < 2:
        raise HotrecError(f"--days must be at least 2 (train days + a val/test day), got {days}")
    if not 0.0 < negative_rate <= 1.0:
        raise HotrecError(f"--negative-rate must be in (0, 1], got {negative_rate}")
    files = day_files(directory, days)
    options = {"days": days, "negative_rate": negative_rate, "seed": seed,
               "min_count": min_count, "hash_rows": hash_rows, "strict": strict}  # fmt: skip
    with gc_paused(), DatasetWriter(out, overwrite) as writer:
        segments = []
        with FirstPass(writer, Mapper(TABLE_NAMES, hash_rows, min_count), strict, files) as first:
            for d, path in enumerate(files):
                train = d < days - 1
                keep = None
                if train and negative_rate < 1.0:
                    keep = negative_sampler(np.random.default_rng([seed, d]), negative_rate)
                start, stop = first.read(path, chunk_bytes, keep)
                segments += [Segment("train", d, start, stop)] if train else halves(d, start, stop)
        meta = {"source": "criteo-terabyte", "options": options, "files": [p.name for p in files],
                "negatives_dropped": first.report.rows_dropped}  # fmt: skip
        return write_splits(writer, first, segments, meta)


def negative_sampler(rng: np.random.Generator, rate: float) -> Callable:
    """keep(label) -> mask: positives always, negatives with probability `rate`; one draw per
    row in file order, so the result does not depend on the block size."""

    def keep(label: np.ndarray) -> np.ndarray:
        return (label == 1) | (rng.random(len(label)) < rate)

    return keep
