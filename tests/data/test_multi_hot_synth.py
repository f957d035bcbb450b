"""`hotrec synth --bag-sizes`: multi-hot synthetic data, each bag led by the one-hot id."""

from __future__ import annotations

import numpy as np
import pytest

from hotrec.cli.main import main
from hotrec.data.format import open_dataset
from hotrec.data.multi_hot import MLPERF_BAG_SIZES, parse_bag_sizes
from hotrec.errors import HotrecError

SIZES = "1,3,1,5,2,1,1,4"  # the tiny profile's 8 tables


def synth(out, *extra) -> int:
    return main(["synth", str(out), "--profile", "tiny", "--rows", "6000", *extra])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    root = tmp_path_factory.mktemp("mh")
    assert synth(root / "one") == 0
    assert synth(root / "fixed", "--bag-sizes", SIZES) == 0
    assert synth(root / "uniform", "--bag-sizes", SIZES, "--bag-lengths", "uniform",
                 "--pooling", "mean") == 0  # fmt: skip
    return root


def test_fixed_bags_hold_their_size_and_start_with_the_one_hot_id(made):
    one, mh = open_dataset(made / "one"), open_dataset(made / "fixed")
    assert mh.schema.bag_tables == [1, 3, 4, 7] and mh.schema.tables[1].pooling == "sum"
    assert mh.meta["multi_hot"]["bag_sizes"] == [1, 3, 1, 5, 2, 1, 1, 4]
    for split in ("train", "val", "test"):
        a, b = one.split(split), mh.split(split)
        assert np.array_equal(np.asarray(b.sparse), np.asarray(a.sparse)[:, [0, 2, 5, 6]])
        assert np.array_equal(np.asarray(b.label), np.asarray(a.label))
        for (values, offsets), t in zip(b.bags, mh.schema.bag_tables, strict=True):
            size = int(SIZES.split(",")[t])
            assert (np.diff(offsets) == size).all()
            assert np.array_equal(values[offsets[:-1]], np.asarray(a.sparse)[:, t])
            assert values.max() < mh.schema.tables[t].rows
            bags = np.asarray(values).reshape(-1, size)  # a bag is a function of its first id
            first = {}
            for bag in bags:
                assert first.setdefault(int(bag[0]), bag.tolist()) == bag.tolist()


def test_uniform_lengths_include_empty_bags_and_the_output_is_deterministic(made, tmp_path):
    mh = open_dataset(made / "uniform")
    values, offsets = mh.split("train").bags[1]  # table 3, size 5
    lengths = np.diff(offsets)
    assert lengths.min() == 0 and lengths.max() == 5 and mh.schema.tables[3].pooling == "mean"
    assert synth(tmp_path / "again", "--bag-sizes", SIZES, "--bag-lengths", "uniform",
                 "--pooling", "mean") == 0  # fmt: skip
    again = open_dataset(tmp_path / "again").split("train").bags[1]
    assert np.array_equal(again[0], values) and np.array_equal(again[1], offsets)


def test_info_counts_every_id_of_a_bag(made, capsys):
    from hotrec.data.stats import skew_summary

    rows = {r["name"]: r for r in skew_summary(open_dataset(made / "fixed"))}
    n = open_dataset(made / "fixed").meta["splits"]["train"]
    assert rows["C2"]["lookups"] == 3 * n and rows["C1"]["lookups"] == n


def test_bag_size_specs():
    assert parse_bag_sizes("mlperf", 26) == list(MLPERF_BAG_SIZES)
    assert sum(MLPERF_BAG_SIZES) == 214
    assert parse_bag_sizes("2", 3) == [2, 2, 2]
    for spec, message in [("mlperf", "Criteo's 26 tables"), ("1,2", "need 1 or 8"),
                          ("0", "at least 1"), ("x", "give 'mlperf'")]:  # fmt: skip
        with pytest.raises(HotrecError, match=message):
            parse_bag_sizes(spec, 8)


def test_a_bad_spec_is_one_line_and_leaves_nothing(tmp_path, capsys):
    assert synth(tmp_path / "bad", "--bag-sizes", "mlperf") == 2
    err = capsys.readouterr().err.strip()
    assert "Criteo's 26 tables" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # no dataset, no hidden one-hot copy
