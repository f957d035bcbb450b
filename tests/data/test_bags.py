"""Multi-hot (bag) tables: the jagged on-disk format, its checks, and sample-major batches."""

from __future__ import annotations

import numpy as np
import pytest

from hotrec.data.format import bag_files, open_dataset
from hotrec.data.jagged import take_rows
from hotrec.data.loader import BatchLoader, IndexBatches
from hotrec.errors import HotrecError
from hotrec.types import Schema, TableSpec
from tests.conftest import write_bag_dataset, write_toy_dataset


@pytest.fixture
def bag_data(tmp_path):
    toy = write_toy_dataset(tmp_path / "toy", rows=600)
    return toy, write_bag_dataset(
        toy, tmp_path / "bags", {1: "sum", 3: "mean"}, max_extra=3, empty_share=0.2
    )


def test_schema_keeps_pooling_and_refuses_an_unknown_one():
    schema = Schema(("a",), (TableSpec("x", 5), TableSpec("g", 9, "mean")))
    back = Schema.from_dict(schema.to_dict())
    assert back == schema and back.bag_tables == [1] and back.one_hot_tables == [0]
    assert "pooling" not in schema.to_dict()["tables"][0]  # one-hot meta.json unchanged
    raw = schema.to_dict()
    raw["tables"][1]["pooling"] = "max"
    with pytest.raises(ValueError, match="pooling is 'max'"):
        Schema.from_dict(raw)


def test_take_rows_of_a_slice_equals_take_rows_of_its_indices():
    values = np.arange(10, 20)
    offsets = np.array([0, 2, 2, 5, 9, 10])  # bags of 2, 0, 3, 4, 1
    v, n = take_rows(values, offsets, slice(1, 4))
    assert v.tolist() == [12, 13, 14, 15, 16, 17, 18] and n.tolist() == [0, 3, 4]
    v2, n2 = take_rows(values, offsets, np.array([1, 2, 3]))
    assert v2.tolist() == v.tolist() and n2.tolist() == n.tolist()
    v3, n3 = take_rows(values, offsets, np.array([4, 0, 1]))
    assert v3.tolist() == [19, 10, 11] and n3.tolist() == [1, 2, 0]


def test_batches_hold_every_tables_ids_sample_major(bag_data):
    toy, bags = bag_data
    one_hot = open_dataset(toy).split("train")
    split = open_dataset(bags).split("train")
    assert split.sparse.shape == (len(split), 2)  # the one-hot tables 0 and 2 only
    batch = BatchLoader(split, 64).load(1)
    values, lengths = batch.bags.values.numpy(), batch.bags.lengths.numpy()
    assert lengths.shape == (64, 4) and (lengths[:, [0, 2]] == 1).all()
    assert lengths.sum() == len(values) and (lengths[:, [1, 3]] == 0).any()  # empty bags
    starts = np.concatenate([[0], np.cumsum(lengths.reshape(-1))])

    def bag(b: int, t: int) -> np.ndarray:
        return values[starts[b * 4 + t] : starts[b * 4 + t + 1]]

    for b in (0, 17, 63):
        row = 64 + b
        assert bag(b, 0).tolist() == [one_hot.sparse[row, 0]]
        assert bag(b, 2).tolist() == [one_hot.sparse[row, 2]]
        for j, t in enumerate((1, 3)):
            vals, offs = split.bags[j]
            assert bag(b, t).tolist() == vals[offs[row] : offs[row + 1]].tolist()
            if len(bag(b, t)):  # the writer puts the one-hot id first
                assert bag(b, t)[0] == one_hot.sparse[row, t]
    rows = np.arange(64, 128)
    picked = IndexBatches(split, prefetch=0).load(rows)  # FAE's index batches: the same
    assert picked.bags.values.tolist() == batch.bags.values.tolist()
    assert picked.bags.lengths.tolist() == batch.bags.lengths.tolist()


def test_damaged_bag_files_are_refused_in_one_line(bag_data):
    _, bags = bag_data
    values_name, offsets_name = bag_files(1)
    offsets = np.load(bags / "val" / offsets_name)
    values = np.load(bags / "val" / values_name)
    np.save(bags / "val" / offsets_name, offsets[:-1])
    with pytest.raises(HotrecError, match="bag-1-offsets.npy has shape"):
        open_dataset(bags).split("val")
    swapped = offsets.copy()
    swapped[3], swapped[4] = offsets[4] + 1, offsets[3]
    np.save(bags / "val" / offsets_name, swapped)
    with pytest.raises(HotrecError, match="offsets decrease"):
        open_dataset(bags).split("val")
    np.save(bags / "val" / offsets_name, offsets)
    bad = values.copy()
    bad[-1] = 20  # table 1 has 20 rows: ids 0..19
    np.save(bags / "val" / values_name, bad)
    with pytest.raises(HotrecError, match="table C2 holds id 20, outside its 20 rows"):
        open_dataset(bags).split("val")
