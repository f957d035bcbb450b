"""Avazu click logs (the `train` CSV, plain or gzip) -> dataset directory.

Each row: id, click, hour (YYMMDDHH), then 21 categorical columns. The label is `click`.
The 21 categoricals become int64 keys with `avazu_key` (reproducible at serving time from
the raw string), then ids through a frequency vocabulary (or `hash_ids` with --hash-rows).
Two more tables, `hour_of_day` (ids 1..24) and `weekday` (ids 1..7, Monday = 1), come from
`hour`, and the dense features are [log1p(hour_of_day), log1p(weekday)].

Splits follow the days of `hour`: all days but the last are train (grouped by day, file
order within a day), the last day is cut in halves in file order: the first half
(rounded up) is val, the rest test.

The file is read twice in chunks of `chunk_rows` lines (hotrec.data.line_chunks; bounded
memory, about 0.8 GB peak at the default 250,000): a scan pass that validates rows, counts
values and rows per day, then a write pass. Malformed rows are counted per kind in the
RowReport (line numbers are 1-based, the header is line 1):
  blank_line           an empty line
  field_count          not 24 comma-separated fields
  truncated_last_line  the last line has no newline and not 24 fields
  bad_value            click is not 0 or 1
  bad_integer          hour is not a valid YYMMDDHH timestamp
  crlf (repaired)      a line ending in CR LF: the CR is dropped and the row is kept
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

from hotrec.data.avazu_keys import KEY_DESCRIPTION, avazu_key, keys_of
from hotrec.data.categorical import CountAccumulator, Vocabulary, hash_ids, save_vocabularies
from hotrec.data.format import DatasetWriter, SplitArrays
from hotrec.data.line_chunks import read_passes
from hotrec.data.rows import RowReport
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec

__all__ = [
    "CATEGORICAL",
    "COLUMNS",
    "DEFAULT_CHUNK_ROWS",
    "DENSE_NAMES",
    "HEADER",
    "TIME_TABLES",
    "avazu_key",
    "prepare_avazu",
]

HEADER = (
    "id,click,hour,C1,banner_pos,site_id,site_domain,site_category,app_id,app_domain,"
    "app_category,device_id,device_ip,device_model,device_type,device_conn_type,"
    "C14,C15,C16,C17,C18,C19,C20,C21"
)
COLUMNS = tuple(HEADER.split(","))  # 24 columns
CATEGORICAL = COLUMNS[3:]  # the 21 categorical columns
TIME_TABLES = (("hour_of_day", 25), ("weekday", 8))  # (name, rows): ids 1 + value
DENSE_NAMES = ("hour_of_day", "weekday")  # log1p of the same values
DEFAULT_CHUNK_ROWS = 250_000  # lines per chunk: ~0.8 GB peak RSS (1,000,000: ~1.9-2.3 GB)


@dataclass
class _Chunk:
    """The good rows of one chunk of lines, plus what was wrong with the others."""

    keys: np.ndarray  # [n, 21] int64 avazu keys
    label: np.ndarray  # [n] float32
    date: np.ndarray  # [n] int32 YYMMDD
    hour: np.ndarray  # [n] int32 0..23
    weekday: np.ndarray  # [n] int32 0..6, Monday = 0
    problems: list[tuple[int, str, int, bool]] = field(default_factory=list)
    # (first line, kind, count, is_repair)


def _row_kinds(df: pl.DataFrame, unterminated_last: bool) -> pl.Series:
    """Per line: the reject kind, or null for a good row (first failing check wins)."""
    line = pl.col("line")
    nfields = line.str.count_matches(",", literal=True) + 1
    is_last = pl.int_range(pl.len()) == pl.len() - 1
    hour = pl.col("field_2")
    hour_ok = hour.str.contains(r"^\d{8}$") & hour.str.slice(6, 2).cast(
        pl.Int32, strict=False
    ).is_between(0, 23)
    return df.select(
        pl.when(line == "")
        .then(pl.lit("blank_line"))
        .when((nfields != len(COLUMNS)) & is_last & unterminated_last)
        .then(pl.lit("truncated_last_line"))
        .when(nfields != len(COLUMNS))
        .then(pl.lit("field_count"))
        .when(~pl.col("field_1").is_in(["0", "1"]))
        .then(pl.lit("bad_value"))
        .when(~hour_ok | pl.col("date").is_null())
        .then(pl.lit("bad_integer"))
        .otherwise(pl.lit(None, pl.String))
        .alias("kind")
    )["kind"]


def _problems(
    kinds: pl.Series, crlf: pl.Series, first_line: int
) -> list[tuple[int, str, int, bool]]:
    """(first line, kind, count, is_repair) per kind met in this chunk."""
    out = []
    frame = pl.DataFrame({"kind": kinds}).with_row_index("i")
    for kind, group in frame.drop_nulls("kind").group_by("kind"):
        out.append((first_line + int(group["i"].min()), kind[0], group.height, False))
    repaired = (crlf & kinds.is_null()).arg_true()
    if len(repaired):
        out.append((first_line + int(repaired[0]), "crlf", len(repaired), True))
    return out


def _parse_chunk(lines: list[str], first_line: int, unterminated_last: bool) -> _Chunk:
    """Validate and split one chunk of text lines (first_line is the 1-based line number)."""
    raw = pl.Series("line", lines, dtype=pl.String)
    crlf = raw.str.ends_with("\r")
    df = pl.DataFrame({"line": raw.str.strip_suffix("\r")})
    fields = df["line"].str.split_exact(",", len(COLUMNS) - 1).struct.unnest()  # [n, 24]
    fields = fields.with_columns(
        pl.col("field_2")
        .str.slice(0, 6)
        .str.strptime(pl.Date, "%y%m%d", strict=False)
        .alias("date")
    )
    kinds = _row_kinds(pl.concat([df, fields], how="horizontal"), unterminated_last)
    good = fields.filter(kinds.is_null())
    date = good["date"]
    cat = good.select([f"field_{i}" for i in range(3, len(COLUMNS))])
    return _Chunk(
        keys=keys_of(cat),
        label=good["field_1"].cast(pl.Float32).to_numpy(),
        date=good["field_2"].str.slice(0, 6).cast(pl.Int32).to_numpy(),
        hour=good["field_2"].str.slice(6, 2).cast(pl.Int32).to_numpy(),
        weekday=(date.dt.weekday().cast(pl.Int32) - 1).to_numpy(),
        problems=_problems(kinds, crlf, first_line),
    )


def _find_input(path: Path) -> Path:
    """The train file itself, or train[.gz|.csv|.csv.gz] inside a directory."""
    if path.is_dir():
        for name in ("train", "train.gz", "train.csv", "train.csv.gz"):
            if (path / name).is_file():
                return path / name
        raise HotrecError(f"{path} holds no Avazu 'train' or 'train.gz' file")
    if not path.is_file():
        raise HotrecError(f"{path} does not exist")
    return path


def _check_header(stream: BinaryIO, path: Path) -> bytes:
    """Read and check line 1; returns its raw bytes."""
    first = stream.readline(4096)
    got = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    if got != HEADER:
        shown = (got[:60] + "...") if len(got) > 60 else got
        text = got.isprintable() and "\ufffd" not in got
        found = f"found {shown!r}" if text else "it is not a text file"
        found = found if first else "the file is empty"
        raise HotrecError(f"{path}: line 1 is not the Avazu header ({found}); expected {HEADER!r}")
    return first


@dataclass
class _Scan:
    """What the first pass learns: rows per date, value counts, checksum, row report."""

    per_date: Counter
    counts: CountAccumulator | None
    checksum: str
    report: RowReport


def _scan(path: Path, chunk_rows: int, strict: bool, count_values: bool) -> _Scan:
    """Pass 1: validate every row, count rows per date and (vocabulary mode) values."""
    report = RowReport(strict=strict)
    counts = CountAccumulator(len(CATEGORICAL)) if count_values else None
    per_date: Counter = Counter()
    digest = hashlib.sha256()
    for _, lines, first_line, unterminated in read_passes(
        path, chunk_rows, "avazu scan", _check_header, digest.update
    ):
        chunk = _parse_chunk(lines, first_line, unterminated)
        for line, kind, count, is_repair in sorted(chunk.problems):
            note = report.repair if is_repair else report.reject
            note(kind, str(path), line, count)
        report.rows_read += len(lines)
        report.rows_written += len(chunk.label)
        if counts is not None:
            counts.update(chunk.keys)
        per_date.update(dict(zip(*np.unique(chunk.date, return_counts=True), strict=True)))
    report.check()
    return _Scan(per_date, counts, digest.hexdigest(), report)


@dataclass
class _Layout:
    """Where each date's rows go: train days in date order, then the last day (val, test)."""

    dates: list[int]  # YYMMDD, ascending
    sizes: list[int]  # rows per date
    n_train: int
    n_val: int
    n_test: int

    @classmethod
    def of(cls, per_date: Counter) -> _Layout:
        dates = sorted(int(d) for d in per_date)
        sizes = [int(per_date[d]) for d in dates]
        last = sizes[-1]
        return cls(dates, sizes, sum(sizes[:-1]), (last + 1) // 2, last // 2)

    def day_starts(self) -> np.ndarray:
        """Global start position of each date (train rows first, then the last day)."""
        return np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)

    def meta(self) -> list[dict]:
        """meta 'days': each day's contiguous row range inside its split."""
        out, start = [], 0
        for i, (d, n) in enumerate(zip(self.dates[:-1], self.sizes[:-1], strict=True)):
            out.append(_day_entry(i, d, "train", start, start + n))
            start += n
        last = len(self.dates) - 1
        out.append(_day_entry(last, self.dates[-1], "val", 0, self.n_val))
        out.append(_day_entry(last, self.dates[-1], "test", 0, self.n_test))
        return out


def _day_entry(day: int, yymmdd: int, split: str, start: int, stop: int) -> dict:
    date = f"20{yymmdd // 10000:02d}-{yymmdd // 100 % 100:02d}-{yymmdd % 100:02d}"
    return {"day": day, "date": date, "split": split, "start": start, "stop": stop}


def _positions(day: np.ndarray, next_free: np.ndarray) -> np.ndarray:
    """Global output positions of a chunk's rows (file order within a day); advances next_free."""
    order = np.argsort(day, kind="stable")
    sorted_day = day[order]
    rank = np.arange(len(day)) - np.searchsorted(sorted_day, sorted_day, side="left")
    pos = np.empty(len(day), dtype=np.int64)
    pos[order] = next_free[sorted_day] + rank
    next_free += np.bincount(day, minlength=len(next_free))
    return pos


def _map_ids(
    keys: np.ndarray, vocabs: list[Vocabulary] | None, hash_rows: int | None
) -> np.ndarray:
    """[n, 21] keys -> [n, 21] ids."""
    if vocabs is None:
        return hash_ids(keys, hash_rows)
    return np.stack([v.map(keys[:, t]) for t, v in enumerate(vocabs)], axis=1)  # [n, 21]


def _features(
    chunk: _Chunk, vocabs: list[Vocabulary] | None, hash_rows: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """sparse [n, 23] ids (21 categoricals, hour_of_day, weekday) and dense [n, 2] log1p."""
    time_ids = np.stack([chunk.hour + 1, chunk.weekday + 1], axis=1)  # [n, 2]
    sparse = np.concatenate([_map_ids(chunk.keys, vocabs, hash_rows), time_ids], axis=1)
    dense = np.log1p(np.stack([chunk.hour, chunk.weekday], axis=1).astype(np.float32))  # [n, 2]
    return sparse, dense


def _write(
    path: Path,
    chunk_rows: int,
    layout: _Layout,
    splits: dict[str, SplitArrays],
    vocabs: list[Vocabulary] | None,
    hash_rows: int | None,
) -> None:
    """Pass 2: parse again and scatter every good row to its split position."""
    dates = np.asarray(layout.dates, dtype=np.int64)
    next_free = layout.day_starts()
    stops = np.cumsum([layout.n_train, layout.n_val, layout.n_test])
    starts = stops - [layout.n_train, layout.n_val, layout.n_test]
    for _, lines, first_line, unterminated in read_passes(
        path, chunk_rows, "avazu write", _check_header
    ):
        chunk = _parse_chunk(lines, first_line, unterminated)
        pos = _positions(np.searchsorted(dates, chunk.date), next_free)
        sparse, dense = _features(chunk, vocabs, hash_rows)
        for split, lo, hi in zip(("train", "val", "test"), starts, stops, strict=True):
            rows = (pos >= lo) & (pos < hi)
            at = pos[rows] - lo
            splits[split].sparse[at] = sparse[rows]
            splits[split].dense[at] = dense[rows]
            splits[split].label[at] = chunk.label[rows]


def prepare_avazu(
    path: Path,
    out: Path,
    *,
    min_count: int = 1,
    hash_rows: int | None = None,
    strict: bool = False,
    overwrite: bool = False,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> Path:
    """Prepare the Avazu `train` CSV (plain or .gz) into a dataset directory; returns it."""
    path, out = _find_input(Path(path)), Path(out)
    if min_count < 1:
        raise HotrecError("--min-count must be at least 1")
    if hash_rows is not None and hash_rows < 2:
        raise HotrecError("--hash-rows must be at least 2")
    if chunk_rows < 1:
        raise HotrecError("chunk_rows must be at least 1")
    if out.exists() and not overwrite:
        raise HotrecError(f"{out} already exists (use --overwrite to replace it)")
    scan = _scan(path, chunk_rows, strict, count_values=hash_rows is None)
    if not scan.per_date:
        raise HotrecError(f"{path}: no valid rows ({scan.report.summary()})")
    layout = _Layout.of(scan.per_date)
    vocabs = None
    if scan.counts is not None:
        vocabs = [
            Vocabulary.from_counts(scan.counts.counts(t), min_count)
            for t in range(len(CATEGORICAL))
        ]
    rows = [v.rows for v in vocabs] if vocabs is not None else [hash_rows] * len(CATEGORICAL)
    tables = [TableSpec(c, n) for c, n in zip(CATEGORICAL, rows, strict=True)]
    schema = Schema(DENSE_NAMES, tuple(tables + [TableSpec(n, r) for n, r in TIME_TABLES]))
    with DatasetWriter(out, overwrite=overwrite) as writer:
        sizes = {"train": layout.n_train, "val": layout.n_val, "test": layout.n_test}
        splits = {s: writer.create_split(s, n, schema) for s, n in sizes.items()}
        _write(path, chunk_rows, layout, splits, vocabs, hash_rows)
        if vocabs is not None:
            save_vocabularies(vocabs, list(CATEGORICAL), writer.path / "vocab")
        meta = {
            "source": "avazu",
            "input": str(path),
            "options": {"min_count": min_count, "hash_rows": hash_rows, "strict": strict},
            "input_checksum": scan.checksum,
            "rows": scan.report.to_dict(),
            "days": layout.meta(),
            "key": KEY_DESCRIPTION,
        }
        return writer.commit(schema, meta)
