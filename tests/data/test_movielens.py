"""MovieLens 100K / 1M preparation on tiny files written in the real formats."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hotrec.data.format import open_dataset
from hotrec.data.movielens import DENSE_NAMES, TABLES, prepare_movielens, text_key
from hotrec.errors import HotrecError, MalformedInput

T0 = 946_857_600  # 2000-01-03 00:00 UTC, a Monday
DAY = 86_400
# (user, item, rating, timestamp) in file order; not time-sorted on purpose.
RATINGS = [
    (1, 1, 5, T0 + 10 * 3600),
    (1, 2, 3, T0),
    (2, 1, 4, T0 + DAY),
    (3, 3, 1, T0 + 2 * DAY),
    (1, 3, 4, T0 + 3 * DAY),
    (2, 2, 2, T0 + 4 * DAY),
    (9, 1, 5, T0 + 5 * DAY),  # user 9 is not in the user file
    (1, 7, 4, T0 + 6 * DAY),  # item 7 is not in the item file
    (2, 3, 5, T0 + 7 * DAY),
    (3, 1, 3, T0 + 8 * DAY),
]
USERS_100K = ["1|24|M|technician|85711", "2|53|F|other|94043", "3|23|M|writer|32067"]
USERS_1M = ["1::M::25::15::85711", "2::F::50::6::94043", "3::M::18::20::32067"]


def _flags(*on: int) -> str:
    return "|".join("1" if g in on else "0" for g in range(19))


ITEMS_100K = [  # genres: 3 Animation, 4 Children's, 5 Comedy, 1 Action, 2 Adventure, 16 Thriller
    f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|{_flags(3, 4, 5)}",
    f"2|GoldenEye (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?GoldenEye%20(1995)|{_flags(1, 2, 16)}",
    f"3|Four Rooms (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Four%20Rooms%20(1995)|{_flags(16)}",
]
ITEMS_1M = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::GoldenEye (1995)::Action|Adventure|Thriller",
    "3::Four Rooms (1995)::Thriller",
]


def write_100k(d: Path, extra_lines: tuple[str, ...] = ()) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in RATINGS] + list(extra_lines)
    (d / "u.data").write_text("\n".join(lines) + "\n")
    (d / "u.user").write_text("\n".join(USERS_100K) + "\n")
    (d / "u.item").write_bytes(("\n".join(ITEMS_100K) + "\n").encode("latin-1"))
    return d


def write_1m(d: Path, extra_lines: tuple[str, ...] = ()) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    lines = [f"{u}::{i}::{r}::{t}" for u, i, r, t in RATINGS] + list(extra_lines)
    (d / "ratings.dat").write_text("\n".join(lines) + "\n")
    (d / "users.dat").write_text("\n".join(USERS_1M) + "\n")
    (d / "movies.dat").write_bytes(("\n".join(ITEMS_1M) + "\n").encode("latin-1"))
    return d


def _all(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dense, sparse, label of train + val + test concatenated (time order)."""
    ds = open_dataset(path)
    parts = [ds.split(s) for s in ("train", "val", "test")]
    return (
        np.concatenate([p.dense for p in parts]),
        np.concatenate([p.sparse for p in parts]),
        np.concatenate([p.label for p in parts]),
    )


@pytest.mark.parametrize("writer", [write_100k, write_1m])
def test_labels_splits_and_schema(tmp_path: Path, writer) -> None:
    out = prepare_movielens(writer(tmp_path / "raw"), tmp_path / "ds")
    ds = open_dataset(out)
    assert ds.meta["splits"] == {"train": 8, "val": 1, "test": 1}
    assert [t.name for t in ds.schema.tables] == list(TABLES)
    assert ds.schema.dense_names == DENSE_NAMES
    order = sorted(range(len(RATINGS)), key=lambda k: RATINGS[k][3])
    _, _, label = _all(out)
    expected = np.array([RATINGS[k][2] >= 4 for k in order], dtype=np.float32)
    np.testing.assert_array_equal(label, expected)
    assert ds.meta["unknown_users"] == 1 and ds.meta["unknown_items"] == 1
    assert ds.meta["source"] == ("movielens-100k" if writer is write_100k else "movielens-1m")


@pytest.mark.parametrize("writer", [write_100k, write_1m])
def test_splits_are_time_ordered(tmp_path: Path, writer) -> None:
    ds = open_dataset(prepare_movielens(writer(tmp_path / "raw"), tmp_path / "ds"))
    days = {
        s: [d["day"] for d in ds.meta["days"] if d["split"] == s] for s in ("train", "val", "test")
    }
    assert days == {"train": [0, 1, 2, 3, 4, 5, 6], "val": [7], "test": [8]}
    assert ds.meta["days"][0] == {"day": 0, "split": "train", "start": 0, "stop": 2}


def test_hand_checked_row_100k(tmp_path: Path) -> None:
    out = prepare_movielens(write_100k(tmp_path / "raw"), tmp_path / "ds")
    dense, sparse, label = _all(out)
    # Rating (2, 1, 4, T0 + DAY) is third in time. Ids by frequency over the 10 ratings:
    # user 2 -> 2, item 1 -> 1, F -> 2, age 53 -> 2, other -> 2, zip 940 -> 2,
    # Animation (item 1, 4 ratings) -> 1, 1995 -> 1.
    np.testing.assert_array_equal(sparse[2], [2, 1, 2, 2, 2, 2, 1, 1])
    assert label[2] == 1.0
    item_age = (T0 + DAY - datetime(1995, 1, 1, tzinfo=UTC).timestamp()) / (365.25 * DAY)
    raw = [0, 1, 0, 0, 1, item_age]  # hour, Tuesday, first rating, no prior, item 1 seen once
    np.testing.assert_allclose(dense[2][:6], np.log1p(raw), rtol=1e-6)
    # Unknown user 9 (item 1) and unknown item 7 (user 1) keep id 0 for their side features.
    np.testing.assert_array_equal(sparse[6][2:6], [0, 0, 0, 0])
    np.testing.assert_array_equal(sparse[7][6:], [0, 0])
    assert dense[7][5] == 0.0  # unknown release date -> item age 0
    values = json.loads((out / "vocab" / "values.json").read_text())
    assert values["user"] == [1, 2, 3, 9] and values["gender"] == ["M", "F"]
    assert values["genre"] == ["Animation", "Thriller", "Action"]
    gender_keys = np.load(out / "vocab" / "gender.npy")
    assert gender_keys.tolist() == [text_key("M"), text_key("F")]


def test_1m_maps_like_100k(tmp_path: Path) -> None:
    _, sparse_100k, _ = _all(prepare_movielens(write_100k(tmp_path / "a"), tmp_path / "da"))
    _, sparse_1m, _ = _all(prepare_movielens(write_1m(tmp_path / "b"), tmp_path / "db"))
    # Same ratings and the same frequency ranks, so the same ids (age / occupation codes
    # differ in spelling but not in rank).
    np.testing.assert_array_equal(sparse_100k, sparse_1m)


@pytest.mark.parametrize("writer", [write_100k, write_1m])
def test_dense_finite_and_time_features_monotone(tmp_path: Path, writer) -> None:
    dense, sparse, _ = _all(prepare_movielens(writer(tmp_path / "raw"), tmp_path / "ds"))
    assert dense.dtype == np.float32 and np.isfinite(dense).all() and (dense >= 0).all()
    since_first = DENSE_NAMES.index("days_since_user_first")
    prior = DENSE_NAMES.index("user_prior_ratings")
    for user in np.unique(sparse[:, 0]):
        rows = sparse[:, 0] == user
        assert np.all(np.diff(dense[rows, since_first]) >= 0)
        assert np.all(np.diff(dense[rows, prior]) > 0)  # one more prior rating each time
        assert dense[rows, since_first][0] == 0.0 and dense[rows, prior][0] == 0.0


def test_malformed_lines_counted(tmp_path: Path) -> None:
    t = T0 + 9 * DAY
    extra = ("", "1\t2\t3", "1\tx\t3\t5", "1\t2\t9\t5", f"3\t2\t4\t{t}\r")
    out = prepare_movielens(write_100k(tmp_path / "raw", extra), tmp_path / "ds")
    rows = open_dataset(out).meta["rows"]
    assert rows["rejected"] == {"blank_line": 1, "field_count": 1, "bad_integer": 1, "bad_value": 1}
    assert rows["repaired"] == {"crlf": 1}
    assert rows["rows_read"] == 15 == rows["rows_written"] + rows["rows_rejected"]
    assert rows["first_example"]["bad_value"].endswith("u.data:14")
    assert open_dataset(out).meta["splits"]["test"] == 1  # 11 rows: 9 / 1 / 1


def test_strict_names_file_and_line(tmp_path: Path) -> None:
    raw = write_1m(tmp_path / "raw", ("1::2::3::x",))
    with pytest.raises(MalformedInput, match=r"ratings\.dat:11: malformed row \(bad_integer\)"):
        prepare_movielens(raw, tmp_path / "ds", strict=True)
    assert not (tmp_path / "ds").exists()


def test_bad_side_lines_skipped_or_strict(tmp_path: Path) -> None:
    raw = write_100k(tmp_path / "raw")
    (raw / "u.user").write_text("\n".join([*USERS_100K, "4|oops"]) + "\n")
    ds = open_dataset(prepare_movielens(raw, tmp_path / "ds"))
    assert ds.meta["side_rows_skipped"] == {"u.user": 1}
    with pytest.raises(MalformedInput, match=r"u\.user:4"):
        prepare_movielens(raw, tmp_path / "ds2", strict=True)


def test_detection_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(HotrecError, match="neither u.data"):
        prepare_movielens(tmp_path / "empty", tmp_path / "ds")
    raw = write_1m(tmp_path / "raw")
    (raw / "movies.dat").unlink()
    with pytest.raises(HotrecError, match="no movies.dat"):
        prepare_movielens(raw, tmp_path / "ds")
    with pytest.raises(HotrecError, match="fractions"):
        prepare_movielens(
            write_100k(tmp_path / "ok"), tmp_path / "ds", val_fraction=0.6, test_fraction=0.5
        )


def test_train_statistics_never_see_a_rows_own_label_nor_val_and_test_labels():
    from hotrec.data.movielens_features import FOLDS, train_statistics

    rng = np.random.default_rng(0)
    n, n_train = 400, 300
    sparse = np.zeros((n, len(TABLES)), np.int64)
    sparse[:, TABLES.index("user")] = rng.integers(1, 20, n)
    sparse[:, TABLES.index("item")] = rng.integers(1, 30, n)
    label = (rng.random(n) < 0.5).astype(np.float32)
    base = train_statistics(sparse, label, n_train)
    flipped = label.copy()
    flipped[n_train:] = 1 - flipped[n_train:]  # val / test labels: no feature may change
    assert np.array_equal(train_statistics(sparse, flipped, n_train), base)
    row = 7  # a train row's own label: its features stay, rows of other folds move
    flipped = label.copy()
    flipped[row] = 1 - flipped[row]
    after = train_statistics(sparse, flipped, n_train)
    assert np.array_equal(after[row], base[row])
    same_user = np.flatnonzero(sparse[:, TABLES.index("user")] == sparse[row, TABLES.index("user")])
    other_fold = [r for r in same_user if r % FOLDS != row % FOLDS or r >= n_train]
    assert other_fold and all(after[r, 2] != base[r, 2] for r in other_fold)
    assert np.all((base[:, 2:] > 0) & (base[:, 2:] < 1))  # smoothed rates


def test_history_features_count_only_events_strictly_before_the_timestamp():
    import polars as pl

    from hotrec.data.movielens_features import PRIOR, history_features

    df = pl.DataFrame(
        {"user": [1, 1, 1, 2, 1], "item": [5, 5, 6, 5, 5], "ts": [10, 10, 20, 20, 30]}
    )
    y = np.array([1, 0, 1, 1, 0], np.float32)
    h = history_features(df, y)  # user_n, item_n, user rate, item rate
    np.testing.assert_array_equal(h[:, :2], [[0, 0], [0, 0], [2, 0], [0, 2], [3, 3]])
    prior = 3 / 4  # every rating before ts 30
    assert h[4, 2] == pytest.approx((2 + PRIOR * prior) / (3 + PRIOR))
    later = y.copy()
    later[[2, 3, 4]] = 1 - later[[2, 3, 4]]  # labels at ts >= 20: rows up to ts 20 keep theirs
    np.testing.assert_array_equal(history_features(df, later)[:4], h[:4])
    earlier = y.copy()
    earlier[0] = 0  # negative control: an earlier label moves the later rows' rates
    assert not np.array_equal(history_features(df, earlier)[2:], h[2:])


def test_history_is_an_option_of_movielens_preparation(tmp_path: Path, capsys) -> None:
    from hotrec.cli.main import main
    from hotrec.data.movielens_features import HISTORY_FEATURES

    raw = write_100k(tmp_path / "raw")
    assert main(["prepare", "movielens", str(raw), str(tmp_path / "ds"), "--history"]) == 0
    ds = open_dataset(tmp_path / "ds")
    assert ds.schema.dense_names == DENSE_NAMES + HISTORY_FEATURES
    assert ds.meta["options"]["history"] is True
    assert main(["prepare", "avazu", str(raw), str(tmp_path / "av"), "--history"]) == 2
    assert "--history adds MovieLens features" in capsys.readouterr().err


@pytest.mark.parametrize("writer", [write_100k, write_1m])
def test_genres_as_a_bag_hold_every_listed_genre(tmp_path: Path, writer) -> None:
    out = prepare_movielens(writer(tmp_path / "raw"), tmp_path / "ds", genres="bag")
    ds = open_dataset(out)
    genre = TABLES.index("genre")
    assert ds.schema.tables[genre].pooling == "mean" and ds.schema.bag_tables == [genre]
    assert ds.meta["options"]["genres"] == "bag"
    names = json.loads((out / "vocab" / "values.json").read_text())["genre"]
    assert names[0] == "Thriller"  # 5 ratings list it: the most frequent, id 1
    listed = {
        1: ["Animation", "Children's", "Comedy"],
        2: ["Action", "Adventure", "Thriller"],
        3: ["Thriller"],
        7: [],
    }  # fmt: skip  (item 7 is not in the item file)
    order = sorted(range(len(RATINGS)), key=lambda k: RATINGS[k][3])
    bags = []
    for split in ("train", "val", "test"):
        values, offsets = ds.split(split).bags[0]
        bags += [values[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:], strict=True)]
    for bag, k in zip(bags, order, strict=True):
        assert [names[i - 1] for i in bag] == listed[RATINGS[k][1]]
    first = open_dataset(prepare_movielens(writer(tmp_path / "raw"), tmp_path / "first"))
    assert not first.schema.has_bags  # the default keeps the first genre, one-hot


def test_genres_is_a_movielens_option(tmp_path: Path, capsys) -> None:
    from hotrec.cli.main import main

    raw = tmp_path / "train.txt"
    raw.write_text("0\t1\n")
    assert main(["prepare", "criteo-kaggle", str(raw), str(tmp_path / "o"), "--genres", "bag"]) == 2
    assert "--genres is for MovieLens" in capsys.readouterr().err
