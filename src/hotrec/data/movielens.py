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
from hotrec.data.movielens_input import (
    _Release,
    detect_release,
    read_items,
    read_ratings,
    read_users,
    text_key,
)
from hotrec.data.rows import RowReport
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec

TABLES = ("user", "item", "gender", "age", "occupation", "zip_prefix", "genre", "release_year")
TEXT_TABLES = ("gender", "occupation", "zip_prefix", "genre")  # keyed by text_key
GENRE_MODES = ("first", "bag")  # the genre table: the first listed genre, or all as a bag


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
