"""MovieLens 100K / 1M input files read into frames: which release a directory holds, the
ratings (malformed lines counted in a RowReport, or fatal in strict mode), the users and the
items (malformed lines skipped and counted). data/movielens.py turns them into a dataset."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from hotrec.data.rows import RowReport
from hotrec.errors import HotrecError, MalformedInput

GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_HASH_MASK = (1 << 62) - 1


@dataclass(frozen=True)
class _Release:
    """File names and separator of one MovieLens release."""

    source: str
    ratings: str
    users: str
    items: str
    sep: str  # of the ratings file
    side_sep: str  # of the user and item files


ML_100K = _Release("movielens-100k", "u.data", "u.user", "u.item", "\t", "|")
ML_1M = _Release("movielens-1m", "ratings.dat", "users.dat", "movies.dat", "::", "::")


def text_key(value: str) -> int:
    """Stable int64 key of a string: first 8 bytes of blake2b (little endian), 62 bits."""
    digest = hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _HASH_MASK


def detect_release(directory: Path) -> _Release:
    """100K or 1M from the files present; HotrecError when neither."""
    if not directory.is_dir():
        raise HotrecError(
            f"{directory} is not a directory (expected a MovieLens 100K or 1M folder)"
        )
    for release in (ML_100K, ML_1M):
        if (directory / release.ratings).is_file():
            for name in (release.users, release.items):
                if not (directory / name).is_file():
                    raise HotrecError(f"{directory} has {release.ratings} but no {name}")
            return release
    raise HotrecError(f"{directory} holds neither u.data (MovieLens 100K) nor ratings.dat (1M)")


def _lines(path: Path) -> tuple[list[str], bool]:
    """Lines of a latin-1 file (no trailing empty piece) and whether the last one lacks LF."""
    lines = path.read_bytes().decode("latin-1").split("\n")
    unterminated = lines[-1] != ""
    if not unterminated:
        lines.pop()
    return lines, unterminated


def read_ratings(path: Path, sep: str, report: RowReport) -> pl.DataFrame:
    """user, item, rating, ts (Int64) of the good lines in file order; counts the others."""
    lines, _ = _lines(path)
    raw = pl.Series("line", lines, dtype=pl.String)
    crlf = raw.str.ends_with("\r")
    parts = raw.str.strip_suffix("\r").str.split(sep)
    names = ("user", "item", "rating", "ts")
    df = pl.DataFrame({"parts": parts}).select(
        pl.col("parts").list.len().alias("n"),
        (pl.col("parts").list.first() == "").alias("blank"),
        *[
            pl.col("parts").list.get(i, null_on_oob=True).str.to_integer(strict=False).alias(c)
            for i, c in enumerate(names)
        ],
    )
    kind = df.select(
        pl.when(pl.col("blank") & (pl.col("n") == 1))
        .then(pl.lit("blank_line"))
        .when(pl.col("n") != len(names))
        .then(pl.lit("field_count"))
        .when(pl.any_horizontal(pl.col(names).is_null()))
        .then(pl.lit("bad_integer"))
        .when(~pl.col("rating").is_between(1, 5) | (pl.col("ts") < 0))
        .then(pl.lit("bad_value"))
        .otherwise(pl.lit(None, pl.String))
    ).to_series()
    _report_lines(report, str(path), kind, crlf)
    report.rows_read += len(lines)
    good = df.filter(kind.is_null()).select(names)
    report.rows_written += good.height
    return good


def _report_lines(report: RowReport, path: str, kind: pl.Series, crlf: pl.Series) -> None:
    """Feed per-line kinds (null = good) to the report, earliest line first (strict mode)."""
    events = []
    frame = pl.DataFrame({"kind": kind}).with_row_index("i")
    for (name,), group in frame.drop_nulls("kind").group_by("kind"):
        events.append((int(group["i"].min()) + 1, name, group.height, False))
    repaired = (crlf & kind.is_null()).arg_true()
    if len(repaired):
        events.append((int(repaired[0]) + 1, "crlf", len(repaired), True))
    for line, name, count, is_repair in sorted(events):
        (report.repair if is_repair else report.reject)(name, path, line, count)


def _side_rows(
    path: Path, sep: str, fields: int, strict: bool, skipped: dict, at_least: bool = False
) -> list[list[str]]:
    """Split lines of a user / item file with an integer first field; others are skipped
    (counted in `skipped` by file name) or, in strict mode, fatal with file:line."""
    rows = []
    lines, _ = _lines(path)
    for number, line in enumerate(lines, start=1):
        parts = line.rstrip("\r").split(sep)
        count_ok = len(parts) >= fields if at_least else len(parts) == fields
        if count_ok and parts[0].strip().isascii() and parts[0].strip().isdigit():
            rows.append(parts)
        elif line.strip():
            if strict:
                kind = "bad_integer" if count_ok else "field_count"
                raise MalformedInput(str(path), number, kind)
            skipped[path.name] = skipped.get(path.name, 0) + 1
    return rows


def read_users(directory: Path, release: _Release, strict: bool, skipped: dict) -> pl.DataFrame:
    """user (Int64) and the raw gender, age, occupation, zip_prefix strings."""
    rows = _side_rows(directory / release.users, release.side_sep, 5, strict, skipped)
    if release is ML_100K:  # user|age|gender|occupation|zip
        cols = [(int(r[0]), r[2], r[1], r[3], r[4][:3]) for r in rows]
    else:  # UserID::Gender::Age::Occupation::Zip-code
        cols = [(int(r[0]), r[1], r[2], r[3], r[4][:3]) for r in rows]
    names = ("user", "gender", "age", "occupation", "zip_prefix")
    schema = {n: (pl.Int64 if n == "user" else pl.String) for n in names}
    df = pl.DataFrame(cols, schema=schema, orient="row").unique("user", keep="first")
    text = [c for c in names if c != "user"]
    return df.with_columns(pl.col(text).str.strip_chars().replace("", None))


def _release_100k(text: str) -> datetime | None:
    """'01-Jan-1995' -> datetime (UTC), None when empty or malformed."""
    try:
        return datetime.strptime(text.strip(), "%d-%b-%Y").replace(tzinfo=UTC)
    except ValueError:
        return None


def read_items(directory: Path, release: _Release, strict: bool, skipped: dict) -> pl.DataFrame:
    """item (Int64), genre (first listed, str), genres (every listed, list of str; 100K's
    "unknown" left out), release_year (Int64), release_ts (Float64)."""
    out = []
    if release is ML_100K:  # item|title|release date|video release|url|19 genre flags
        for r in _side_rows(
            directory / release.items, release.side_sep, 5 + len(GENRES_100K), strict, skipped
        ):
            flags = [g for g, f in zip(GENRES_100K, r[5:], strict=True) if f.strip() == "1"]
            out.append((int(r[0]), flags, _release_100k(r[2])))
    else:  # MovieID::Title (Year)::Genre1|Genre2
        for r in _side_rows(
            directory / release.items, release.side_sep, 3, strict, skipped, at_least=True
        ):
            year = re.search(r"\((\d{4})\)\s*$", "::".join(r[1:-1]))
            when = datetime(int(year.group(1)), 1, 1, tzinfo=UTC) if year else None
            out.append((int(r[0]), [g.strip() for g in r[-1].split("|") if g.strip()], when))
    rows = []
    for item, genres, when in out:
        first = genres[0] if genres and genres[0] != "unknown" else None
        genres = [g for g in genres if g != "unknown"]
        rows.append((item, first, genres, when and when.year, when and when.timestamp()))
    schema = {
        "item": pl.Int64,
        "genre": pl.String,
        "genres": pl.List(pl.String),
        "release_year": pl.Int64,
        "release_ts": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema, orient="row").unique("item", keep="first")
