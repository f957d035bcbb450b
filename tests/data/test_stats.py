from pathlib import Path

import numpy as np
import pytest

from hotrec.data import stats
from hotrec.data.format import DatasetWriter, open_dataset
from hotrec.data.stats import skew_summary
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec


def write_known(out: Path) -> Path:
    """Train split of 100 rows with known counts, in shuffled order.

    A (200 rows): id 5 x 50, ids 10..59 once each -> top 2 rows (1%) = 50 + 1, top 20 = 50 + 19.
    B (10 rows): id 3 x 100 -> top 1 row = everything.
    C (1 row): only id 0.
    """
    schema = Schema(("I1",), (TableSpec("A", 200), TableSpec("B", 10), TableSpec("C", 1)))
    a = np.concatenate([np.full(50, 5), np.arange(10, 60)])
    sparse = np.stack([a, np.full(100, 3), np.zeros(100, int)], axis=1)  # [100, 3]
    sparse = sparse[np.random.default_rng(0).permutation(100)]
    with DatasetWriter(out) as w:
        arrays = w.create_split("train", 100, schema)
        arrays.sparse[:] = sparse
        arrays.dense[:] = 0.0
        arrays.label[:] = 0.0
        w.create_split("val", 0, schema)
        w.commit(schema, {"source": "hand-built"})
    return out


def test_known_shares_and_distinct(tmp_path):
    summary = skew_summary(open_dataset(write_known(tmp_path / "d")), max_rows=None)
    a, b, c = summary
    assert [s["name"] for s in summary] == ["A", "B", "C"]
    assert (a["rows"], a["distinct"], a["lookups"]) == (200, 51, 100)
    assert (a["top1_rows"], a["top10_rows"]) == (2, 20)
    assert a["top1_share"] == pytest.approx(0.51)
    assert a["top10_share"] == pytest.approx(0.69)
    assert (b["distinct"], b["top1_rows"], b["top1_share"], b["top10_share"]) == (1, 1, 1.0, 1.0)
    assert (c["distinct"], c["top1_share"]) == (1, 1.0)
    assert all(s["scanned_rows"] is None for s in summary)


def test_chunks_and_table_groups_do_not_change_the_answer(tmp_path, monkeypatch):
    ds = open_dataset(write_known(tmp_path / "d"))
    whole = skew_summary(ds, max_rows=None)
    monkeypatch.setattr(stats, "CHUNK_ROWS", 7)
    monkeypatch.setattr(stats, "MAX_COUNTS", 150)  # A alone, then B + C
    assert stats._table_groups([200, 10, 1], 150) == [[0], [1, 2]]
    assert skew_summary(ds, max_rows=None) == whole


def test_max_rows_limits_the_scan_and_says_so(tmp_path):
    ds = open_dataset(write_known(tmp_path / "d"))
    first = np.asarray(ds.split("train").sparse[:40, 0])
    a = skew_summary(ds, max_rows=40)[0]
    assert a["scanned_rows"] == 40 and a["lookups"] == 40
    assert a["distinct"] == len(np.unique(first))
    assert a["top1_share"] == pytest.approx((np.sum(first == 5) + (first != 5).any()) / 40)
    assert skew_summary(ds, max_rows=1000)[0]["scanned_rows"] is None  # nothing was cut


def test_empty_split_and_corrupt_ids(tmp_path):
    ds = open_dataset(write_known(tmp_path / "d"))
    assert all(s["top1_share"] == 0.0 and s["distinct"] == 0 for s in skew_summary(ds, "val"))
    with open(ds.path / "train" / "sparse.npy", "r+b") as f:  # last value: C's id 0 -> 7
        f.seek(-ds.split("train").sparse.itemsize, 2)
        f.write(np.array([7], ds.split("train").sparse.dtype).tobytes())
    with pytest.raises(HotrecError, match="table C holds id 7, outside its 1 rows"):
        skew_summary(ds, max_rows=None)
