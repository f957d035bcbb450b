"""Criteo Kaggle / Terabyte preparation on tiny files written in the exact raw format."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hotrec.data import criteo, tsv
from hotrec.data.categorical import CountAccumulator, Vocabulary
from hotrec.data.criteo import prepare_criteo_kaggle, prepare_criteo_terabyte
from hotrec.data.format import open_dataset
from hotrec.data.keyindex import KeyIndex
from hotrec.data.tsv import PAD, parse_decimal, parse_hex
from hotrec.errors import HotrecError, MalformedInput

POOL = ["fffe8d6c", "80000000", "68fd1e64", "0", "7fffffff", "abc", "ffffffff", "05db9164"]


def line(label="0", ints=None, cats=None) -> str:
    """One raw Criteo line: label, 13 integer fields, 26 hex fields (no newline)."""
    ints = [str(i) for i in range(13)] if ints is None else ints
    cats = [POOL[t % len(POOL)] for t in range(26)] if cats is None else cats
    return "\t".join([label, *ints, *cats])


def random_lines(n: int, seed: int = 0) -> list[str]:
    """Skewed categoricals (incl. >= 0x80000000), ~10% empty integers, some negatives."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        ints = [
            "" if rng.random() < 0.1 else str(int(rng.integers(-3, 3000) // (1 + i)))
            for i in range(13)
        ]
        cats = [
            "" if rng.random() < 0.05 else POOL[min(int(rng.zipf(1.5)) - 1, len(POOL) - 1)]
            for _ in range(26)
        ]
        out.append(line(str(int(rng.random() < 0.3)), ints, cats))
    return out


def write(path: Path, lines: list[str], end: str = "\n", gz: bool = False) -> Path:
    data = "".join(x + end for x in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def all_rows(out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dense, sparse, label of train + test + val in file order (the last day: test first)."""
    ds = open_dataset(out)
    parts = [ds.split(s) for s in ("train", "test", "val")]
    return tuple(
        np.concatenate([getattr(p, k) for p in parts]) for k in ("dense", "sparse", "label")
    )


def reference(lines: list[str], min_count: int = 1):
    """Plain-Python reading of valid lines: (dense, ids, label) with frequency vocabularies."""
    rows = []
    for text in lines:
        f = text.split("\t")
        ok = len(f) == 40 and f[0] in ("0", "1")
        ok = ok and all(x == "" or x.lstrip("-").isdigit() for x in f[1:14])
        ok = ok and all(len(x) <= 8 and all(c in "0123456789abcdef" for c in x) for x in f[14:])
        if ok:
            rows.append(f)
    dense = np.log1p(np.array([[max(int(x or 0), 0) for x in f[1:14]] for f in rows], np.float32))
    keys = np.array([[int(x, 16) if x else -1 for x in f[14:]] for f in rows], np.int64)
    ids = np.zeros_like(keys)
    for t in range(26):
        counts = Counter(k for k in keys[:, t] if k != -1)
        ranked = sorted(
            (k for k, c in counts.items() if c >= min_count), key=lambda k: (-counts[k], k)
        )
        lookup = {k: i + 1 for i, k in enumerate(ranked)}
        ids[:, t] = [lookup.get(k, 0) for k in keys[:, t]]
    return dense, ids, np.array([float(f[0]) for f in rows], np.float32)


def test_values_ids_and_vocabulary_round_trip(tmp_path):
    lines = random_lines(300)
    lines[0] = line("1", ["-5", "", "0", "1", "2147483648"] + ["7"] * 8)
    out = prepare_criteo_kaggle(write(tmp_path / "train.txt", lines), tmp_path / "ds")
    dense, sparse, label = all_rows(out)
    ref_dense, ref_ids, ref_label = reference(lines)
    np.testing.assert_allclose(dense, ref_dense, rtol=1e-6)
    np.testing.assert_array_equal(sparse, ref_ids)
    np.testing.assert_array_equal(label, ref_label)
    assert dense[0, :3].tolist() == [0.0, 0.0, 0.0]  # negative and missing -> 0
    assert dense[0, 4] == pytest.approx(np.log1p(2147483648.0))
    meta = json.loads((out / "meta.json").read_text())
    assert meta["source"] == "criteo-kaggle" and len(meta["input_checksum"]) == 64
    assert [t["name"] for t in meta["schema"]["tables"]] == [f"C{i}" for i in range(1, 27)]
    # Vocabularies hold the raw keys in id order, including values >= 0x80000000.
    vocab = np.load(out / "vocab" / "C1.npy")
    raw = np.array([int(x.split("\t")[14] or "-1", 16) for x in lines])
    np.testing.assert_array_equal(vocab[sparse[raw >= 0, 0] - 1], raw[raw >= 0])
    assert raw.max() >= 0x80000000 and vocab.dtype == np.int64


def test_min_count_maps_rare_values_to_zero(tmp_path):
    lines = random_lines(200, seed=3)
    out = prepare_criteo_kaggle(write(tmp_path / "t.txt", lines), tmp_path / "ds", min_count=5)
    _, sparse, _ = all_rows(out)
    np.testing.assert_array_equal(sparse, reference(lines, min_count=5)[1])
    assert (sparse == 0).sum() > (reference(lines)[1] == 0).sum()


def test_hash_rows(tmp_path):
    lines = random_lines(50, seed=4)
    out = prepare_criteo_kaggle(write(tmp_path / "t.txt", lines), tmp_path / "ds", hash_rows=1000)
    _, sparse, _ = all_rows(out)
    keys = np.array([[int(x, 16) if x else -1 for x in s.split("\t")[14:]] for s in lines])
    np.testing.assert_array_equal(sparse, np.where(keys == -1, 0, 1 + keys % 999))
    assert open_dataset(out).schema.table_rows == [1000] * 26
    assert not (out / "vocab").exists()


def test_kaggle_seven_day_split(tmp_path):
    lines = [line(ints=[str(i)] + ["1"] * 12) for i in range(110)]  # I1 = row number
    out = prepare_criteo_kaggle(write(tmp_path / "t.txt", lines), tmp_path / "ds")
    ds = open_dataset(out)
    assert ds.meta["splits"] == {"train": 95, "val": 7, "test": 8}  # days: 16 x 5, 15, 15
    days = ds.meta["days"]
    assert [(d["day"], d["split"], d["stop"] - d["start"]) for d in days][:2] == [
        (0, "train", 16),
        (1, "train", 16),
    ]
    assert days[-2:] == [
        {"day": 6, "split": "val", "start": 0, "stop": 7},  # listed in split order
        {"day": 6, "split": "test", "start": 0, "stop": 8},
    ]
    order = np.expm1(np.concatenate([ds.split(s).dense[:, 0] for s in ("train", "test", "val")]))
    np.testing.assert_allclose(order, np.arange(110), atol=1e-3)  # file order kept
    assert days[5] == {"day": 5, "split": "train", "start": 80, "stop": 95}


def test_gz_input_equals_plain(tmp_path):
    lines = random_lines(120, seed=5)
    a = prepare_criteo_kaggle(write(tmp_path / "t.txt", lines), tmp_path / "a")
    b = prepare_criteo_kaggle(write(tmp_path / "t.txt.gz", lines, gz=True), tmp_path / "b")
    for x, y in zip(all_rows(a), all_rows(b), strict=True):
        np.testing.assert_array_equal(x, y)
    meta_a, meta_b = (json.loads((p / "meta.json").read_text()) for p in (a, b))
    assert meta_a["input_checksum"] == meta_b["input_checksum"]  # over the content as read


def malformed_file(path: Path) -> tuple[Path, list[str]]:
    """Good rows mixed with one of each malformed kind; returns the good lines too."""
    good = random_lines(20, seed=6)
    bad = {
        "blank": "",
        "39 fields": "\t".join(line().split("\t")[:39]),
        "41 fields": line() + "\tabc",
        "bad int": line(ints=["12x"] + ["1"] * 12),
        "bad hex": line(cats=["zzzz"] + ["1"] * 25),
        "bad label": line(label="2"),
    }
    text = "\n".join(good[:10] + list(bad.values()) + good[10:19]) + "\n"
    text += good[19] + "\r\n"  # CRLF: repaired and kept
    text += "1\t2\t3"  # truncated last line, no newline
    path.write_bytes(text.encode())
    return path, good


def test_malformed_rows_counted_per_kind(tmp_path):
    path, good = malformed_file(tmp_path / "t.txt")
    out = prepare_criteo_kaggle(path, tmp_path / "ds")
    rows = open_dataset(out).meta["rows"]
    assert rows["rejected"] == {
        "blank_line": 1,
        "field_count": 2,
        "bad_integer": 1,
        "bad_hex": 1,
        "bad_value": 1,
        "truncated_last_line": 1,
    }
    assert rows["repaired"] == {"crlf": 1}
    assert rows["rows_read"] == 27 == rows["rows_written"] + rows["rows_rejected"]
    assert rows["rows_written"] == 20
    assert rows["first_example"]["bad_hex"].endswith("t.txt:15")
    dense, sparse, label = all_rows(out)
    np.testing.assert_array_equal(sparse, reference(good)[1])  # the CRLF row is intact


def test_complete_last_line_without_newline_is_kept(tmp_path):
    lines = random_lines(10, seed=7)
    path = tmp_path / "t.txt"
    path.write_bytes("\n".join(lines).encode())  # no final newline, 40 good fields
    rows = open_dataset(prepare_criteo_kaggle(path, tmp_path / "ds")).meta["rows"]
    assert rows["rows_written"] == 10 and rows["rows_rejected"] == 0


@pytest.mark.parametrize("chunk_bytes", [64 << 20, 700])
@pytest.mark.parametrize(
    "bad_line, kind",
    [("", "blank_line"), ("1\t2", "field_count"), (line(ints=["12x"] + ["1"] * 12), "bad_integer"),
     (line(cats=["1"] * 25 + ["zzzz"]), "bad_hex"), (line() + "\r", "crlf")],
)  # fmt: skip
def test_strict_stops_at_first_bad_row_with_file_and_line(
    tmp_path, monkeypatch, bad_line, kind, chunk_bytes
):
    monkeypatch.setattr(tsv, "RANGE_BYTES", 1000)  # several parse ranges per block
    lines = random_lines(30, seed=8)
    lines.insert(23, bad_line)
    lines.append(bad_line)  # a later one must not be the one reported
    path = write(tmp_path / "t.txt", lines)
    with pytest.raises(MalformedInput) as err:
        prepare_criteo_kaggle(path, tmp_path / "ds", strict=True, chunk_bytes=chunk_bytes)
    assert (err.value.path, err.value.line, err.value.kind) == (str(path), 24, kind)
    assert f"t.txt:24: malformed row ({kind})" in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_strict_truncated_last_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(("\n".join(random_lines(5)) + "\n1\t0").encode())
    with pytest.raises(MalformedInput, match=r"t\.txt:6: malformed row \(truncated_last_line\)"):
        prepare_criteo_kaggle(path, tmp_path / "ds", strict=True)


def test_chunk_boundaries_do_not_change_the_output(tmp_path, monkeypatch):
    path, _ = malformed_file(tmp_path / "t.txt")
    big = prepare_criteo_kaggle(path, tmp_path / "big")
    monkeypatch.setattr(tsv, "RANGE_BYTES", 700)  # and several parse ranges per block
    for chunk in (1, 37, 1000, 3000):
        small = prepare_criteo_kaggle(path, tmp_path / f"c{chunk}", chunk_bytes=chunk)
        for x, y in zip(all_rows(big), all_rows(small), strict=True):
            np.testing.assert_array_equal(x, y)
        meta_big, meta_small = open_dataset(big).meta, open_dataset(small).meta
        assert meta_big["rows"] == meta_small["rows"]
        assert meta_big["input_checksum"] == meta_small["input_checksum"]


def test_failure_midway_leaves_nothing_behind(tmp_path, monkeypatch):
    path = write(tmp_path / "t.txt", random_lines(50))

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(criteo, "write_rows", boom)  # pass 2, after the spool is written
    with pytest.raises(RuntimeError):
        prepare_criteo_kaggle(path, tmp_path / "ds")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.txt"]


def terabyte_dir(root: Path) -> tuple[Path, list[list[str]]]:
    """day_0 .. day_3, day_1 gzipped; about 30% positives."""
    root.mkdir()
    days = [random_lines(80, seed=10 + d) for d in range(4)]
    for d, lines in enumerate(days):
        write(root / (f"day_{d}.gz" if d == 1 else f"day_{d}"), lines, gz=d == 1)
    return root, days


def test_terabyte_days_prefix_and_splits(tmp_path):
    root, days = terabyte_dir(tmp_path / "tb")
    out = prepare_criteo_terabyte(root, tmp_path / "ds", days=3)
    ds = open_dataset(out)
    assert ds.meta["splits"] == {"train": 160, "val": 40, "test": 40}  # day_3 not used
    assert ds.meta["files"] == ["day_0", "day_1.gz", "day_2"]
    assert [d["day"] for d in ds.meta["days"]] == [0, 1, 2, 2]
    _, sparse, label = all_rows(out)
    np.testing.assert_array_equal(sparse, reference(days[0] + days[1] + days[2])[1])
    with pytest.raises(HotrecError, match="day_4"):
        prepare_criteo_terabyte(root, tmp_path / "ds2", days=5)


def test_terabyte_negative_downsampling(tmp_path):
    root, days = terabyte_dir(tmp_path / "tb")
    kw = {"days": 3, "negative_rate": 0.5, "seed": 1}
    a = open_dataset(prepare_criteo_terabyte(root, tmp_path / "a", **kw))
    b = open_dataset(prepare_criteo_terabyte(root, tmp_path / "b", chunk_bytes=500, **kw))
    c = open_dataset(prepare_criteo_terabyte(root, tmp_path / "c", **{**kw, "seed": 2}))
    for x, y in zip(all_rows(a.path), all_rows(b.path), strict=True):
        np.testing.assert_array_equal(x, y)  # same seed: same rows, whatever the chunking
    assert a.split("train").label.tolist() != c.split("train").label.tolist()
    rows, last = a.meta["rows"], days[2]
    positives = sum(x[0] == "1" for x in days[0] + days[1])
    assert a.split("train").label.sum() == positives  # positives always kept
    assert 0 < rows["rows_dropped"] == a.meta["negatives_dropped"] < 160 - positives
    assert a.meta["splits"]["val"] + a.meta["splits"]["test"] == len(last)  # never sampled
    assert rows["rows_read"] == rows["rows_written"] + rows["rows_rejected"] + rows["rows_dropped"]
    # Dropped rows do not count towards the vocabularies: ids equal a reference on kept rows.
    kept = []
    for d in (0, 1):
        keep = criteo.negative_sampler(np.random.default_rng([1, d]), 0.5)
        mask = keep(np.array([int(x[0]) for x in days[d]], dtype=np.uint8))
        kept += [x for x, k in zip(days[d], mask, strict=True) if k]
    np.testing.assert_array_equal(all_rows(a.path)[1], reference(kept + last)[1])


def test_bad_options_are_one_line_errors(tmp_path):
    path = write(tmp_path / "t.txt", random_lines(5))
    with pytest.raises(HotrecError, match="min-count"):
        prepare_criteo_kaggle(path, tmp_path / "ds", min_count=0)
    with pytest.raises(HotrecError, match="not found"):
        prepare_criteo_kaggle(tmp_path / "missing.txt", tmp_path / "ds")
    with pytest.raises(HotrecError, match="negative-rate"):
        prepare_criteo_terabyte(tmp_path, tmp_path / "ds", negative_rate=0.0)
    write(tmp_path / "empty.txt", [])
    with pytest.raises(HotrecError, match="no valid rows"):
        prepare_criteo_kaggle(tmp_path / "empty.txt", tmp_path / "ds")


def test_key_index_matches_count_accumulator_and_vocabulary():
    rng = np.random.default_rng(0)
    pool = rng.choice(1 << 32, 5000, replace=False).astype(np.int64)
    index, acc, seen = KeyIndex(capacity=8), CountAccumulator(1), []
    for _ in range(20):
        keys = pool[(len(pool) * rng.random(3000) ** 3).astype(int)]
        keys[rng.random(3000) < 0.1] = -1
        codes = index.add(keys)
        assert (codes[keys == -1] == 0).all()
        assert (index.keys_[codes[keys != -1] - 1] == keys[keys != -1]).all()
        acc.update(keys[:, None])
        seen.append(keys)
    for min_count in (1, 3):
        ours = Vocabulary.from_counts(index.counts(), min_count)
        theirs = Vocabulary.from_counts(acc.counts(0), min_count)
        np.testing.assert_array_equal(ours.keys_by_id, theirs.keys_by_id)
        keys = np.concatenate(seen)
        np.testing.assert_array_equal(index.remap(ours)[index.lookup(keys)], theirs.map(keys))


def fields_buffer(fields: list[bytes]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One padded line and the [1, F] field ends / lengths."""
    buf = b"0" * PAD + b"\t".join(fields) + b"\n"
    ends = PAD + np.cumsum([len(f) + 1 for f in fields]) - 1
    return buf, ends[None], np.array([[len(f) for f in fields]])


def test_parse_hex_and_decimal_edge_cases():
    hexes = [b"0", b"ffffffff", b"fffe8d6c", b"80000000", b"", b"abc", b"zzzz", b"A1", b"g"]
    hexes += [b"123456789", b"-1", b"0x12", b"1 2", b"o0000000"]
    values, ok = parse_hex(*fields_buffer(hexes))
    assert ok[0].tolist() == [True] * 6 + [False] * 8
    assert values[0, :6].tolist() == [0, 0xFFFFFFFF, 0xFFFE8D6C, 0x80000000, -1, 0xABC]
    ints = [b"0", b"-5", b"12x", b"", b"-", b"99999999", b"123456789012", b"-123456789", b"1-2"]
    values, ok = parse_decimal(*fields_buffer(ints))
    assert ok[0].tolist() == [True, True, False, True, False, True, True, True, False]
    assert values[0, [0, 1, 3, 5, 6, 7]].tolist() == [0, -5, 0, 99999999, 123456789012, -123456789]
