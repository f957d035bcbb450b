"""MovieLens 100K / 1M ratings -> dataset directory (label: rating >= 4).

Which release is detected from the files: 100K has u.data, u.user, u.item; 1M has
ratings.dat, users.dat, movies.dat. The files are small, so everything is loaded at once.

Tables (ids by decreasing frequency over the written ratings, 0 = missing / unknown):
user, item, gender, age, occupation, zip_prefix (first 3 chars), genre (the first listed;
100K's "unknown" genre counts as missing), release_year. Keys are the raw integers for
user, item, age and release_year and `text_key` of the string for the others;
vocab/<table>.npy holds the keys in id order and vocab/values.json the raw values.

Dense features (float32, log1p of the value; computed in data/movielens_features.py). Six
from the rating's own time and earlier ratings only (earlier = before it in the stable time order): hour_of_day, day_of_week
(Monday = 0), days_since_user_first (days since the user's first rating),
user_prior_ratings, item_prior_ratings (ratings seen before this one) and item_age_years
(rating time minus the release date, 0 when unknown or negative). Four from the train
split's labels only, as a practitioner builds target statistics: user_train_ratings,
item_train_ratings, user_train_positive_rate and item_train_positive_rate (smoothed toward
the train mean with PRIOR pseudo-ratings); a train row's rates leave out its own fold of
FOLDS interleaved folds, so no row sees its own label, and val / test rows see all of train.

Split: ratings sorted by timestamp (stable); the first 1 - val - test share is train, then
val, then test. Malformed rating lines are counted in the RowReport (blank_line,
field_count, bad_integer, bad_value for a rating outside 1..5 or a negative timestamp;
crlf repaired). Malformed lines in the user / item files are skipped and counted in meta
(or fatal with file:line in strict mode).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from hotrec.data.categorical import (
    MISSING,
    CountAccumulator,
    Vocabulary,
    save_vocabularies,
)
from hotrec.data.format import DatasetWriter
from hotrec.data.movielens_features import (
    DAY_S,
    DENSE_NAMES,
    HISTORY_FEATURES,
    dense_features,
    history_features,
    train_statistics,
)
from hotrec.data.rows import RowReport
from hotrec.errors import HotrecError, MalformedInput
from hotrec.types import Schema, TableSpec

TABLES = ("user", "item", "gender", "age", "occupation", "zip_prefix", "genre", "release_year")
TEXT_TABLES = ("gender", "occupation", "zip_prefix", "genre")  # keyed by text_key
GENRE_MODES = ("first", "bag")  # the genre table: the first listed genre, or all as a bag
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


def _key_column(df: pl.DataFrame, table: str) -> np.ndarray:
    """[n] int64 keys of one table, MISSING where the value is unknown."""
    col = df[table]
    if table in TEXT_TABLES:
        distinct = col.drop_nulls().unique().to_list()
        keys = pl.Series([text_key(v) for v in distinct], dtype=pl.Int64)
        col = col.replace_strict(distinct, keys, default=None, return_dtype=pl.Int64)
    elif table == "age":
        col = col.str.strip_chars().str.to_integer(strict=False)
    return col.fill_null(MISSING).cast(pl.Int64).to_numpy()


def _genre_bag(df: pl.DataFrame, vocabs: list[Vocabulary]) -> tuple[np.ndarray, np.ndarray]:
    """Every listed genre of each rating's item: (ids [L] row after row, lengths [n]); the
    genre table's vocabulary is rebuilt from every listed genre's count over the ratings."""
    t = TABLES.index("genre")
    lists = df["genres"].fill_null([])
    flat = lists.explode().drop_nulls()
    distinct = flat.unique().to_list()
    keys = flat.replace_strict(distinct, [text_key(g) for g in distinct], return_dtype=pl.Int64)
    counts = keys.value_counts(name="count").rename({keys.name: "key"})
    vocabs[t] = Vocabulary.from_counts(counts.with_columns(pl.col("count").cast(pl.Int64)), 1)
    return vocabs[t].map(keys.to_numpy()), lists.list.len().to_numpy().astype(np.int64)


def _vocab_values(df: pl.DataFrame, keys: np.ndarray, vocabs: list[Vocabulary]) -> dict:
    """Raw value of each id 1..K per table (id i + 1 at list index i), for serving."""
    out = {}
    for t, (table, vocab) in enumerate(zip(TABLES, vocabs, strict=True)):
        pairs = pl.DataFrame({"key": keys[:, t], "raw": df[table]})
        if table == "genre":  # every listed genre (the bag's vocabulary has them all)
            listed = df["genres"].fill_null([]).explode().drop_nulls().unique()
            listed_keys = [text_key(g) for g in listed.to_list()]
            pairs = pl.concat([pairs, pl.DataFrame({"key": listed_keys, "raw": listed})])
        pairs = pairs.unique("key")
        raw = dict(zip(pairs["key"].to_list(), pairs["raw"].to_list(), strict=True))
        out[table] = [raw[int(k)] for k in vocab.keys_by_id]
    return out


def _days_meta(ts: np.ndarray, sizes: dict[str, int]) -> list[dict]:
    """Each UTC day's contiguous row range inside each split of time-sorted ratings."""
    day = ts // DAY_S - (ts[0] // DAY_S if len(ts) else 0)
    out, start = [], 0
    for split, n in sizes.items():
        d = day[start : start + n]
        cuts = np.flatnonzero(np.diff(d)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
            if hi > lo:
                out.append({"day": int(d[lo]), "split": split, "start": int(lo), "stop": int(hi)})
        start += n
    return out


def _checksum(directory: Path, release: _Release) -> str:
    """sha256 over the names and bytes of the three input files."""
    h = hashlib.sha256()
    for name in (release.ratings, release.users, release.items):
        h.update(name.encode() + b"\0")
        h.update((directory / name).read_bytes())
    return h.hexdigest()


def _split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """Rows of train / val / test for n time-ordered ratings."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise HotrecError("val and test fractions must be in [0, 1) with a sum below 1")
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    return {"train": n - n_val - n_test, "val": n_val, "test": n_test}


def prepare_movielens(
    directory: Path,
    out: Path,
    *,
    strict: bool = False,
    overwrite: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    history: bool = False,
    genres: str = "first",
) -> Path:
    """Prepare a MovieLens 100K or 1M directory into a dataset directory; returns it.
    history: add HISTORY_FEATURES (time-causal user and item statistics); genres: "first"
    (the genre table holds the first listed genre) or "bag" (every listed genre, a multi-hot
    table with mean pooling)."""
    directory, out = Path(directory), Path(out)
    release = detect_release(directory)
    if genres not in GENRE_MODES:
        raise HotrecError(f"genres {genres!r}: use {' or '.join(GENRE_MODES)}")
    if out.exists() and not overwrite:
        raise HotrecError(f"{out} already exists (use --overwrite to replace it)")
    report, skipped = RowReport(strict=strict), {}
    ratings = read_ratings(directory / release.ratings, release.sep, report)
    report.check()
    if ratings.height == 0:
        raise HotrecError(f"{directory / release.ratings}: no valid ratings ({report.summary()})")
    sizes = _split_sizes(ratings.height, val_fraction, test_fraction)
    users = read_users(directory, release, strict, skipped)
    items = read_items(directory, release, strict, skipped)
    df = (
        ratings.sort("ts", maintain_order=True)
        .join(users, on="user", how="left", maintain_order="left")
        .join(items, on="item", how="left", maintain_order="left")
    )
    keys = np.stack([_key_column(df, t) for t in TABLES], axis=1)  # [n, T]
    counts = CountAccumulator(len(TABLES))
    counts.update(keys)
    vocabs = [Vocabulary.from_counts(counts.counts(t), min_count=1) for t in range(len(TABLES))]
    genre_t = TABLES.index("genre")
    bag = _genre_bag(df, vocabs) if genres == "bag" else None  # (ids [L], lengths [n])
    names = DENSE_NAMES + (HISTORY_FEATURES if history else ())
    pooling = {genre_t: "mean"} if bag else {}
    schema = Schema(
        names,
        tuple(
            TableSpec(t, v.rows, pooling.get(i, ""))
            for i, (t, v) in enumerate(zip(TABLES, vocabs, strict=True))
        ),
    )
    sparse = np.stack([v.map(keys[:, t]) for t, v in enumerate(vocabs)], axis=1)  # [n, T]
    label = (df["rating"].to_numpy() >= 4).astype(np.float32)
    columns = (TABLES.index("user"), TABLES.index("item"))
    stats = train_statistics(sparse, label, sizes["train"], columns)
    parts = [dense_features(df), np.log1p(stats)]
    if history:
        parts.append(np.log1p(history_features(df, label)))
    dense = np.concatenate(parts, axis=1).astype(np.float32)  # [n, 10] (+4 with history)
    with DatasetWriter(out, overwrite=overwrite) as writer:
        start = 0
        ends = None if bag is None else np.concatenate([[0], np.cumsum(bag[1])])  # [n + 1]
        for split, n in sizes.items():
            if bag is None:
                arrays = writer.create_split(split, n, schema)
            else:
                lo, hi = int(ends[start]), int(ends[start + n])
                arrays = writer.create_split(split, n, schema, {genre_t: hi - lo})
                values, offsets = arrays.bags[0]
                values[:], offsets[:] = bag[0][lo:hi], ends[start : start + n + 1] - lo
            arrays.sparse[:] = sparse[start : start + n][:, schema.one_hot_tables]
            arrays.dense[:] = dense[start : start + n]
            arrays.label[:] = label[start : start + n]
            start += n
        save_vocabularies(vocabs, list(TABLES), writer.path / "vocab")
        values = _vocab_values(df, keys, vocabs)
        (writer.path / "vocab" / "values.json").write_text(json.dumps(values, indent=1) + "\n")
        meta = {
            "source": release.source,
            "input": str(directory),
            "options": {
                "val_fraction": val_fraction,
                "test_fraction": test_fraction,
                "strict": strict,
                "history": history,
                "genres": genres,
            },
            "input_checksum": _checksum(directory, release),
            "rows": report.to_dict(),
            "days": _days_meta(df["ts"].to_numpy(), sizes),
            "unknown_users": int((~df["user"].is_in(users["user"].implode())).sum()),
            "unknown_items": int((~df["item"].is_in(items["item"].implode())).sum()),
            "side_rows_skipped": skipped,
            "label": "rating >= 4",
        }
        return writer.commit(schema, meta)
