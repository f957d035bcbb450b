import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hotrec.data import synthetic
from hotrec.data.format import SPLITS, open_dataset
from hotrec.data.stats import skew_summary
from hotrec.data.synthetic import (
    BLOCK_ROWS,
    KAGGLE_CARDINALITIES,
    MAX_EXPONENT,
    expected_access_probabilities,
    popularity_exponent,
    resolve_cardinalities,
    synthesize,
    teacher_logits,
)
from hotrec.errors import HotrecError


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    ds = open_dataset(path)
    return {
        f"{s}/{k}": np.asarray(getattr(ds.split(s), k))
        for s in SPLITS
        for k in ("dense", "sparse", "label")
    }


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synthesize(tmp_path_factory.mktemp("syn") / "tiny", seed=3)


def test_same_seed_same_bytes_other_seed_other_data(tiny, tmp_path):
    again = synthesize(tmp_path / "again", seed=3)
    for f in sorted(tiny.glob("*/*.npy")):
        assert f.read_bytes() == (again / f.relative_to(tiny)).read_bytes(), f
    other = arrays_of(synthesize(tmp_path / "other", seed=4))
    for name, a in arrays_of(tiny).items():
        assert a.shape == other[name].shape and not np.array_equal(a, other[name]), name


def test_chunk_rows_and_threads_do_not_change_the_output(tmp_path, monkeypatch):
    rows = 2 * BLOCK_ROWS + 1234  # three internal blocks; the last one straddles val/test
    big = synthesize(tmp_path / "big", rows=rows, max_table_rows=300, days=3)
    monkeypatch.setattr(synthetic, "_workers", lambda: 1)
    small = synthesize(tmp_path / "small", rows=rows, max_table_rows=300, days=3, chunk_rows=1)
    for name, a in arrays_of(big).items():
        assert np.array_equal(a, arrays_of(small)[name]), name


def test_shapes_dtypes_and_ranges(tiny):
    ds = open_dataset(tiny)
    assert ds.meta["splits"] == {"train": 17142, "val": 1429, "test": 1429}
    assert ds.schema.dense_names == ("I1", "I2", "I3", "I4")
    assert [t.name for t in ds.schema.tables] == [f"C{i}" for i in range(1, 9)]
    rows = np.array(ds.schema.table_rows)
    for split in SPLITS:
        a = ds.split(split)
        n = ds.meta["splits"][split]
        assert a.dense.shape == (n, 4) and a.dense.dtype == np.float32
        assert a.sparse.shape == (n, 8) and a.sparse.dtype == np.int32
        assert a.label.dtype == np.float32 and set(np.unique(a.label)) == {0.0, 1.0}
        assert (a.sparse >= 0).all() and (a.sparse < rows).all()
        assert np.isfinite(a.dense).all() and (a.dense >= 0).all()
    train = ds.split("train")
    assert 0.002 < (train.sparse == 0).mean() < 0.05  # a small missing rate in every table
    assert ((train.sparse == 0).mean(0) > 0).all()
    counts = np.expm1(train.dense.astype(np.float64))
    assert np.allclose(counts, np.round(counts), atol=1e-3 * (1 + counts))  # log1p of counts
    assert ((train.dense == 0).mean(0) > 0.01).all()  # every feature has zeros
    assert (train.sparse.max(0) > 0.9 * (rows - 1)).sum() >= 4  # the tail is reached


def test_positive_rate_near_a_quarter(tiny):
    ds = open_dataset(tiny)
    labels = np.concatenate([np.asarray(ds.split(s).label) for s in SPLITS])
    assert 0.20 <= labels.mean() <= 0.30
    assert ds.meta["teacher"]["positive_rate"] == pytest.approx(labels.mean())


def test_expected_top_median_ratio():
    for rows in (500, 20_000, 2_202_608):
        p = expected_access_probabilities(rows)
        assert len(p) == rows - 1 and p.sum() == pytest.approx(1.0)
        assert np.all(np.diff(p) <= 0)
        assert p[0] / np.median(p) >= 10_000, rows
    # Tiny tables cannot reach it with a sensible exponent: they get the documented cap.
    assert popularity_exponent(10) == MAX_EXPONENT
    assert popularity_exponent(100) == MAX_EXPONENT
    assert popularity_exponent(10_000_000) < popularity_exponent(1_000) < MAX_EXPONENT


def test_empirical_popularity_matches_the_expected_skew(tiny):
    ds = open_dataset(tiny)
    ids = np.asarray(ds.split("train").sparse[:, 4])  # C5: 5,000 rows
    counts = np.bincount(ids[ids > 0], minlength=5000)[1:]
    freq = np.sort(counts)[::-1] / counts.sum()
    p = expected_access_probabilities(5000)
    sigma = np.sqrt(p[:10] * (1 - p[:10]) / counts.sum())
    assert np.all(np.abs(freq[:10] - p[:10]) < 5 * sigma + 1e-3)
    assert freq[0] > 100 * np.median(freq)  # strong skew, seen in the data itself
    s = skew_summary(ds, max_rows=None)[4]
    assert s["top1_share"] == pytest.approx(p[:49].sum(), abs=0.05)  # 50 rows incl. id 0
    assert s["top1_share"] > 0.4 and s["distinct"] < 0.8 * 5000


def test_teacher_logit_separates_the_labels(tiny):
    ds = open_dataset(tiny)
    for split in ("train", "test"):
        auc = roc_auc_score(ds.split(split).label, teacher_logits(ds, split))
        assert auc >= 0.75, (split, auc)


def top_ids(path: Path, split: str, rows: slice) -> np.ndarray:
    """Most frequent non-missing id per table within `rows` of `split`."""
    sparse = np.asarray(open_dataset(path).split(split).sparse[rows])
    return np.array([np.bincount(c[c > 0]).argmax() for c in sparse.T])


def test_drift_moves_popular_rows_and_teacher(tmp_path):
    still = synthesize(tmp_path / "still", rows=14_000, drift=0.0)
    moving = synthesize(tmp_path / "moving", rows=14_000, drift=1.0)
    first, last = slice(0, 2000), slice(None)  # day 0 is train rows 0..1999; test is last day
    assert np.array_equal(top_ids(still, "train", first), top_ids(still, "test", last))
    assert (top_ids(moving, "train", first) != top_ids(moving, "test", last)).all()
    # The teacher moves too: the last day's logits differ from the weight set 0 logits.
    ds = open_dataset(moving)
    plan = synthetic._make_plan(ds.meta["options"])
    test = ds.split("test")
    columns = np.ascontiguousarray(np.asarray(test.sparse).T)  # [T, n]
    fixed = plan.teacher.logit(np.asarray(test.dense), columns)
    assert np.abs(teacher_logits(ds, "test") - fixed).mean() > 0.3
    day0 = ds.split("train")
    columns = np.ascontiguousarray(np.asarray(day0.sparse[:2000]).T)  # [T, 2000]
    start = plan.teacher.logit(np.asarray(day0.dense[:2000]), columns)
    assert np.allclose(teacher_logits(ds, "train")[:2000], start)


def test_meta_records_options_days_and_teacher(tiny, tmp_path):
    meta = json.loads((tiny / "meta.json").read_text())
    assert meta["source"] == "synthetic"
    o = meta["options"]
    assert {k: o[k] for k in ("profile", "rows", "scale", "days", "drift", "seed")} == {
        "profile": "tiny",
        "rows": 20_000,
        "scale": 1.0,
        "days": 7,
        "drift": 0.0,
        "seed": 3,
    }
    assert o["max_table_rows"] is None and o["overwrite"] is False and o["chunk_rows"] == 1 << 18
    assert o["cardinalities"] == [t["rows"] for t in meta["schema"]["tables"]]
    assert len(meta["input_checksum"]) == 64
    days = meta["days"]
    assert [d["day"] for d in days] == [0, 1, 2, 3, 4, 5, 6, 6]
    assert [d["split"] for d in days] == ["train"] * 6 + ["val", "test"]
    for split in SPLITS:
        mine = [d for d in days if d["split"] == split]
        assert mine[0]["start"] == 0 and mine[-1]["stop"] == meta["splits"][split]
        assert all(a["stop"] == b["start"] for a, b in zip(mine, mine[1:], strict=False))
    t = meta["teacher"]
    assert "latent" in t["description"] and 0.2 <= t["positive_rate"] <= 0.3
    assert len(t["pairs"]) == 4 and len(t["popularity_exponents"]) == 8
    chunked = synthesize(tmp_path / "c", seed=3, chunk_rows=5000)
    reseeded = synthesize(tmp_path / "r", seed=4)
    assert open_dataset(chunked).meta["input_checksum"] == meta["input_checksum"]
    assert open_dataset(reseeded).meta["input_checksum"] != meta["input_checksum"]


def test_scale_and_max_table_rows(tmp_path):
    card = resolve_cardinalities("criteo-kaggle", scale=0.001, max_table_rows=5000)
    expect = [min(5000, max(2, round(c * 0.001))) for c in KAGGLE_CARDINALITIES]
    assert card == expect and min(card) == 2 and max(card) == 5000
    out = synthesize(
        tmp_path / "k", profile="criteo-kaggle", rows=3000, scale=0.001, max_table_rows=5000
    )
    ds = open_dataset(out)
    assert ds.schema.table_rows == card and ds.schema.num_dense == 13
    assert (np.asarray(ds.split("train").sparse) < np.array(card)).all()
    assert sum(ds.meta["splits"].values()) == 3000


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"profile": "nope"}, "unknown synthetic profile"),
        ({"days": 1}, "days must be >= 2"),
        ({"rows": 5}, "rows must be >= 2 x days"),
        ({"drift": 1.5}, "drift must be within 0..1"),
        ({"scale": 0.0}, "scale must be > 0"),
        ({"max_table_rows": 1}, "max_table_rows must be >= 2"),
        ({"rows": 10**15}, "GB free"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(HotrecError, match=message):
        synthesize(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_existing_directory_needs_overwrite(tiny, tmp_path):
    out = synthesize(tmp_path / "o", rows=500)
    with pytest.raises(HotrecError, match="already exists"):
        synthesize(out, rows=500)
    synthesize(out, rows=600, overwrite=True)
    assert sum(open_dataset(out).meta["splits"].values()) == 600


def test_teacher_logits_only_for_synthetic_datasets(toy_dataset):
    with pytest.raises(HotrecError, match="not a synthetic dataset"):
        teacher_logits(open_dataset(toy_dataset))
