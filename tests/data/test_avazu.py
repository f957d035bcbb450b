"""Avazu preparation on tiny CSV files written in the real format."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from hotrec.data.avazu import CATEGORICAL, HEADER, avazu_key, prepare_avazu
from hotrec.data.format import open_dataset
from hotrec.errors import HotrecError, MalformedInput


def row(i: int, click: int | str, hour: str, c1: str = "1005", site: str = "1fbe01fe") -> str:
    """One Avazu line: id, click, hour, then the 21 categoricals (C1, site_id vary)."""
    cats = [c1, "0", site, "f3845767", "28905ebd", "ecad2386", "7801e8d9", "07d7df22"]
    cats += ["a99f214a", f"{i % 7:08x}", "711ee120", "1", "2", "15706", "320", "50"]
    cats += ["1722", "0", "35", "-1" if i % 3 else "", "79"]  # empty C20 now and then
    return ",".join([str(10_000_000_000 + i), str(click), hour, *cats])


# Days 21 (Tue) .. 23 (Thu); a day-22 row comes before the last day-21 row in the file.
HOURS = ["14102100", "14102101", "14102205", "14102123", "14102207", "14102300"]
HOURS += ["14102301", "14102302", "14102303", "14102304"]
ROWS = [row(i, i % 2, h, c1=str(1000 + i % 3), site=f"{i:08x}") for i, h in enumerate(HOURS)]


def write(path: Path, lines: list[str], header: str = HEADER, end: str = "\n") -> Path:
    data = (header + "\n" + "\n".join(lines) + end).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)
    return path


def arrays(path: Path) -> dict[str, np.ndarray]:
    ds = open_dataset(path)
    out = {}
    for s in ("train", "val", "test"):
        a = ds.split(s)
        out.update({f"{s}/dense": a.dense[:], f"{s}/sparse": a.sparse[:], f"{s}/label": a.label[:]})
    return out


def test_header_checked(tmp_path: Path) -> None:
    bad = write(tmp_path / "train", ROWS, header=HEADER.replace("click", "clicks"))
    with pytest.raises(HotrecError, match=r"train: line 1 is not the Avazu header.*id,click,hour"):
        prepare_avazu(bad, tmp_path / "ds")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(HotrecError, match="the file is empty"):
        prepare_avazu(tmp_path / "empty", tmp_path / "ds")
    with pytest.raises(HotrecError, match="does not exist"):
        prepare_avazu(tmp_path / "nope", tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


def test_day_split(tmp_path: Path) -> None:
    out = prepare_avazu(write(tmp_path / "train", ROWS), tmp_path / "ds")
    ds = open_dataset(out)
    assert ds.meta["splits"] == {"train": 5, "val": 3, "test": 2}
    a = arrays(out)
    hour_id, weekday_id = -2, -1  # the two time tables come last
    # Train grouped by day (file order within a day); last day halves in file order.
    np.testing.assert_array_equal(a["train/sparse"][:, hour_id], [1, 2, 24, 6, 8])
    np.testing.assert_array_equal(a["train/sparse"][:, weekday_id], [2, 2, 2, 3, 3])
    np.testing.assert_array_equal(a["val/sparse"][:, hour_id], [1, 2, 3])
    np.testing.assert_array_equal(a["test/sparse"][:, hour_id], [4, 5])
    np.testing.assert_array_equal(a["train/label"], [0, 1, 1, 0, 0])
    np.testing.assert_allclose(a["val/dense"][0], np.log1p([0, 3]))  # 00h, Thursday
    assert ds.meta["days"] == [
        {"day": 0, "date": "2014-10-21", "split": "train", "start": 0, "stop": 3},
        {"day": 1, "date": "2014-10-22", "split": "train", "start": 3, "stop": 5},
        {"day": 2, "date": "2014-10-23", "split": "val", "start": 0, "stop": 3},
        {"day": 2, "date": "2014-10-23", "split": "test", "start": 0, "stop": 2},
    ]
    assert [t.name for t in ds.schema.tables] == [*CATEGORICAL, "hour_of_day", "weekday"]


def test_key_stable_and_collision_free() -> None:
    strings = ["1005", "01005", "4101", "1fbe01fe", "1FBE01FE", "0", "00", "a", "10", "16"]
    strings += ["abcdef01234567", "abcdef012345678", "-1", "+1", "0x1005", "caf\u00e9"]
    keys = avazu_key(np.array(strings, dtype=object))
    assert len(set(keys.tolist())) == len(strings) and (keys >= 0).all()
    np.testing.assert_array_equal(keys, avazu_key(pl.Series(strings)))
    np.testing.assert_array_equal(avazu_key(np.array(["", None], dtype=object)), [-1, -1])
    # The layout is part of the dataset format: pin both branches.
    assert keys[0] == (1 << 62) | (4 << 56) | 0x1005
    digest = hashlib.blake2b(b"1FBE01FE", digest_size=8).digest()
    assert keys[4] == int.from_bytes(digest, "little") & ((1 << 62) - 1)


def test_same_string_same_id_and_vocab(tmp_path: Path) -> None:
    out = prepare_avazu(write(tmp_path / "train", ROWS), tmp_path / "ds")
    a = arrays(out)
    sparse = np.concatenate([a["train/sparse"], a["val/sparse"], a["test/sparse"]])
    c1 = sparse[:, 0]
    assert set(c1.tolist()) == {1, 2, 3}  # three distinct C1 strings
    vocab = np.load(out / "vocab" / "C1.npy")
    np.testing.assert_array_equal(
        np.sort(vocab), np.sort(avazu_key(np.array(["1000", "1001", "1002"])))
    )
    c20 = sparse[:, CATEGORICAL.index("C20")]
    assert (c20 == 0).sum() == 4 and len(set(c20[c20 > 0].tolist())) == 1  # empty -> 0


def test_gzip_equals_plain(tmp_path: Path) -> None:
    plain = prepare_avazu(write(tmp_path / "train", ROWS), tmp_path / "a")
    packed = prepare_avazu(write(tmp_path / "train.gz", ROWS), tmp_path / "b")
    for name, value in arrays(plain).items():
        np.testing.assert_array_equal(value, arrays(packed)[name], err_msg=name)
    meta_a, meta_b = open_dataset(plain).meta, open_dataset(packed).meta
    assert meta_a["input_checksum"] == meta_b["input_checksum"]
    assert meta_a["rows"] == meta_b["rows"]


def malformed_lines() -> list[str]:
    """Good rows mixed with one of each malformed kind; the last line lacks its newline."""
    return [
        ROWS[0],
        "",  # line 3: blank
        row(49, 1, "14102100") + ",extra",  # line 4: 25 fields
        row(50, 2, "14102100"),  # line 5: click 2
        row(51, 1, "14102199"),  # line 6: hour 99
        row(52, 1, "1410x100"),  # line 7: not digits
        *ROWS[1:5],
        ROWS[5] + "\r",  # line 12: CRLF, repaired
        *ROWS[6:],
        "1,0,14102300",  # line 17: truncated last line
    ]


def test_malformed_rows_counted(tmp_path: Path) -> None:
    out = prepare_avazu(write(tmp_path / "train", malformed_lines(), end=""), tmp_path / "ds")
    ds = open_dataset(out)
    rows = ds.meta["rows"]
    assert rows["rejected"] == {
        "blank_line": 1,
        "field_count": 1,
        "bad_value": 1,
        "bad_integer": 2,
        "truncated_last_line": 1,
    }
    assert rows["repaired"] == {"crlf": 1}
    assert rows["rows_read"] == 16 == rows["rows_written"] + rows["rows_rejected"]
    assert rows["rows_written"] == len(ROWS) == sum(ds.meta["splits"].values())
    examples = rows["first_example"]
    assert examples["blank_line"].endswith("train:3") and examples["bad_integer"].endswith(
        "train:6"
    )
    assert examples["crlf"].endswith("train:12") and examples["truncated_last_line"].endswith(":17")
    # The good rows come out exactly as from a clean file.
    clean = arrays(prepare_avazu(write(tmp_path / "clean", ROWS), tmp_path / "clean_ds"))
    for name, value in arrays(out).items():
        np.testing.assert_array_equal(value, clean[name], err_msg=name)


@pytest.mark.parametrize(
    ("lines", "where", "kind"),
    [
        (malformed_lines(), "train:3", "blank_line"),
        ([*ROWS[:4], row(9, 1, "2014102100")], "train:6", "bad_integer"),
        ([*ROWS[:2], ROWS[2] + "\r"], "train:4", "crlf"),
    ],
)
def test_strict_names_file_and_line(tmp_path: Path, lines, where, kind) -> None:
    path = write(tmp_path / "train", lines)
    with pytest.raises(MalformedInput, match=rf"{where}: malformed row \({kind}\)"):
        prepare_avazu(path, tmp_path / "ds", strict=True, chunk_rows=2)
    assert not (tmp_path / "ds").exists()


def test_chunk_boundaries_do_not_matter(tmp_path: Path) -> None:
    path = write(tmp_path / "train", malformed_lines(), end="")
    big = prepare_avazu(path, tmp_path / "big", chunk_rows=1_000_000)
    expected = arrays(big)
    for chunk_rows in (1, 2, 3):
        small = prepare_avazu(path, tmp_path / f"c{chunk_rows}", chunk_rows=chunk_rows)
        for name, value in arrays(small).items():
            np.testing.assert_array_equal(value, expected[name], err_msg=f"{chunk_rows} {name}")
        for key in ("rows", "days", "input_checksum", "schema"):
            assert open_dataset(small).meta[key] == open_dataset(big).meta[key], key


def test_hash_rows_and_min_count(tmp_path: Path) -> None:
    path = write(tmp_path / "train", ROWS)
    hashed = open_dataset(prepare_avazu(path, tmp_path / "h", hash_rows=5))
    assert hashed.schema.table_rows == [5] * 21 + [25, 8]
    assert not (hashed.path / "vocab").exists()
    sparse = hashed.split("train").sparse[:, :21]
    assert sparse.min() >= 0 and sparse.max() <= 4
    rare = open_dataset(prepare_avazu(path, tmp_path / "m", min_count=4))
    site = CATEGORICAL.index("site_id")  # every site_id is unique -> all rare
    assert rare.schema.tables[site].rows == 1 and rare.split("train").sparse[:, site].max() == 0
    assert rare.schema.tables[0].rows == 2  # only C1 "1000" is seen 4 times
    c1 = np.concatenate([rare.split(s).sparse[:, 0] for s in ("train", "val", "test")])
    np.testing.assert_array_equal(c1, [1, 0, 1, 0, 0, 0, 1, 0, 0, 1])  # rows 0,1,3,2,4,5..9
    with pytest.raises(HotrecError, match="hash-rows"):
        prepare_avazu(path, tmp_path / "x", hash_rows=1)


def test_a_file_without_line_breaks_is_refused_not_read_whole(tmp_path):
    path = tmp_path / "train"
    path.write_text(HEADER + "\n" + "x" * (1 << 21))
    with pytest.raises(HotrecError, match="line 2 is longer than"):
        prepare_avazu(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
