"""Popularity profiler, hot set, coverage curve and byte parsing, against brute-force counts."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from hotrec.errors import HotrecError
from hotrec.placement.hotset import HotSet
from hotrec.placement.popularity import (
    PopularityProfiler,
    access_cdf,
    hot_input_share_curve,
    parse_bytes,
    row_ranks,
    top_rows,
)

TABLE_ROWS = [6, 3, 40]
OFFSETS = np.array([0, 6, 9])


def skewed_sparse(n: int = 500, seed: int = 0) -> np.ndarray:
    """[n, T] int32 per-table ids with zipf-like skew, every table's rows in range."""
    rng = np.random.default_rng(seed)
    cols = [np.minimum(rng.zipf(1.6, n) - 1, rows - 1) for rows in TABLE_ROWS]
    return np.stack(cols, axis=1).astype(np.int32)  # [n, T]


def brute_counts(sparse: np.ndarray) -> np.ndarray:
    counter = Counter()
    for row in sparse:
        for t, i in enumerate(row):
            counter[int(OFFSETS[t] + i)] += 1
    return np.array([counter[g] for g in range(sum(TABLE_ROWS))])


def fitted(sparse: np.ndarray, **kw) -> PopularityProfiler:
    return PopularityProfiler(sample_fraction=1.0, **kw).fit(sparse, TABLE_ROWS, ["a", "b", "c"])


def test_full_sample_counts_equal_brute_force():
    sparse = skewed_sparse()
    prof = fitted(sparse, block_rows=64)
    np.testing.assert_array_equal(prof.counts_, brute_counts(sparse))
    assert prof.counts_.dtype == np.int64 and prof.sampled_inputs_ == len(sparse)
    assert prof.sampled_blocks_ == 8  # ceil(500 / 64)
    np.testing.assert_array_equal(prof.sample_global_ids_, sparse + OFFSETS)
    np.testing.assert_array_equal(prof.table_offsets_, OFFSETS)


def test_sampling_takes_whole_blocks_and_at_least_one():
    sparse = np.zeros((1000, 3), np.int32)
    sparse[:, 2] = np.arange(1000) // 100  # table c, id = block number
    prof = PopularityProfiler(sample_fraction=0.25, seed=3, block_rows=100).fit(sparse, TABLE_ROWS)
    block_counts = prof.table_counts(2)[:10]
    assert prof.sampled_inputs_ == 300 and prof.sampled_blocks_ == 3  # ceil(2.5) blocks
    assert sorted(block_counts[block_counts > 0].tolist()) == [100, 100, 100]
    tiny = PopularityProfiler(sample_fraction=1e-9, block_rows=100).fit(sparse, TABLE_ROWS)
    assert tiny.sampled_inputs_ == 100 and tiny.counts_.sum() == 300


def test_seeded_sampling_is_reproducible():
    sparse = skewed_sparse(2000)
    a, b, c = (
        PopularityProfiler(0.1, seed, block_rows=50, max_share_inputs=70).fit(sparse, TABLE_ROWS)
        for seed in (7, 7, 8)
    )
    np.testing.assert_array_equal(a.counts_, b.counts_)
    np.testing.assert_array_equal(a.sample_global_ids_, b.sample_global_ids_)
    assert not np.array_equal(a.counts_, c.counts_)


def test_share_subsample_is_bounded_and_drawn_from_the_sample():
    sparse = skewed_sparse(900)
    prof = fitted(sparse, block_rows=100, max_share_inputs=50)
    assert prof.sample_global_ids_.shape == (50, 3)
    all_rows = {tuple(r) for r in (sparse + OFFSETS).tolist()}
    assert all(tuple(r) in all_rows for r in prof.sample_global_ids_.tolist())


@pytest.mark.parametrize(
    "sparse, message",
    [
        (np.array([[0, 0, 40]]), "outside 0..39"),
        (np.array([[0, -1, 0]]), "outside 0..2"),
        (np.zeros((4, 2), np.int32), "do not match 3 tables"),
        (np.zeros((0, 3), np.int32), "no inputs"),
    ],
)
def test_bad_inputs_raise_one_line_errors(sparse, message):
    with pytest.raises(HotrecError, match=message):
        fitted(sparse)


def test_bad_fraction_and_unfitted_profiler():
    with pytest.raises(HotrecError, match="sample fraction"):
        PopularityProfiler(sample_fraction=0).fit(skewed_sparse(10), TABLE_ROWS)
    with pytest.raises(HotrecError, match="not fitted"):
        HotSet.from_profile(PopularityProfiler(), 1024, 4)


def test_capacity_is_budget_over_row_bytes():
    prof = fitted(skewed_sparse(3000))
    assert np.count_nonzero(prof.counts_) > 12
    hot = HotSet.from_profile(prof, budget_bytes=100, dim=2)  # 100 // 8
    assert hot.stats["capacity"] == 12 and len(hot.rows) == 12
    hot8 = HotSet.from_profile(prof, budget_bytes=100, dim=2, bytes_per_value=2)  # 100 // 4
    assert hot8.capacity == 25 and hot8.stats["hot_bytes"] == 25 * 2 * 2
    assert set(hot.rows) <= set(hot8.rows)
    coldest_hot = prof.counts_[hot.rows].min()
    others = np.setdiff1d(np.arange(len(prof.counts_)), hot.rows)
    assert prof.counts_[others].max() <= coldest_hot


def test_never_seen_rows_are_excluded_even_under_a_huge_budget():
    sparse = skewed_sparse(200)
    prof = fitted(sparse)
    hot = HotSet.from_profile(prof, budget_bytes=1 << 30, dim=4)
    np.testing.assert_array_equal(hot.rows, np.flatnonzero(brute_counts(sparse)))
    assert hot.stats["capacity"] > len(hot.rows) < sum(TABLE_ROWS)
    assert hot.stats["lookup_share"] == 1.0 and hot.stats["input_share"] == 1.0


def test_ties_go_to_the_lower_global_id():
    # table a: rows 1, 3, 5 seen twice each, row 2 three times; tables b, c: row 0 every time
    col = [2, 2, 2, 5, 5, 3, 3, 1, 1]
    sparse = np.stack([col, [0] * 9, [0] * 9], axis=1)
    prof = fitted(sparse)
    rows = [HotSet.from_profile(prof, 4 * 4 * k, 4).rows.tolist() for k in (3, 4, 5)]
    # counts: 6 -> 9, 9 -> 9, 2 -> 3, then 1, 3, 5 -> 2
    assert rows == [[2, 6, 9], [1, 2, 6, 9], [1, 2, 3, 6, 9]]
    again = HotSet.from_profile(fitted(sparse), 4 * 4 * 4, 4)
    np.testing.assert_array_equal(again.rows, rows[1])


def test_top_rows_agree_with_row_ranks_under_many_ties():
    counts = np.random.default_rng(1).integers(0, 4, 300)
    rank = row_ranks(counts)
    for k in (0, 1, 17, 100, 250, 400):
        np.testing.assert_array_equal(top_rows(counts, k), np.flatnonzero(rank < k))
    assert (rank[counts == 0] > 10**15).all()


def hand_hot_set() -> HotSet:
    return HotSet(np.array([2, 5, 9]), OFFSETS, TABLE_ROWS, ["a", "b", "c"], {})


def test_slots_is_hot_and_hot_inputs_on_numpy_and_torch():
    hot = hand_hot_set()
    ids = np.array([[2, 6, 9], [5, 7, 9], [0, 5, 48]])
    expected_slots = np.array([[0, -1, 2], [1, -1, 2], [-1, 1, -1]])
    np.testing.assert_array_equal(hot.slots(ids), expected_slots)
    np.testing.assert_array_equal(hot.slots(ids.astype(np.int32)), expected_slots)
    np.testing.assert_array_equal(hot.is_hot(ids), expected_slots >= 0)
    np.testing.assert_array_equal(hot.hot_inputs(np.array([[2, 5, 9], [2, 5, 10]])), [True, False])
    t = torch.from_numpy(ids).int()
    assert torch.equal(hot.slots(t), torch.from_numpy(expected_slots))
    assert hot.is_hot(t).dtype == torch.bool
    assert hot.hot_inputs(torch.tensor([[9, 2, 5], [1, 2, 5]])).tolist() == [True, False]
    empty = HotSet(np.zeros(0, np.int64), OFFSETS, TABLE_ROWS, ["a", "b", "c"], {})
    assert empty.slots(ids).tolist() == [[-1] * 3] * 3
    assert empty.slots(t).eq(-1).all()


def test_slot_map_to_global_and_compatibility():
    hot = hand_hot_set()
    slot_of = hot.slot_map()
    assert slot_of.shape == (49,) and slot_of[[2, 5, 9, 3]].tolist() == [0, 1, 2, -1]
    np.testing.assert_array_equal(hot.to_global(np.array([[2, 0, 0]])), [[2, 6, 9]])
    assert hot.to_global(torch.tensor([[1, 2, 3]])).tolist() == [[1, 8, 12]]
    assert hot.rows_per_table() == [2, 0, 1]
    hot.stats["dim"] = 16
    hot.check_compatible(TABLE_ROWS, 16)
    with pytest.raises(HotrecError, match="embedding_dim 16"):
        hot.check_compatible(TABLE_ROWS, 8)
    with pytest.raises(HotrecError, match="other tables"):
        hot.check_compatible([6, 3, 41], 16)


def test_coverage_shares_equal_brute_force():
    sparse = skewed_sparse(700, seed=4)
    prof = fitted(sparse)
    hot = HotSet.from_profile(prof, budget_bytes=6 * 16, dim=4)
    hot_rows = set(hot.rows.tolist())
    lookups = [int(OFFSETS[t] + i) for row in sparse for t, i in enumerate(row)]
    inputs = [[int(OFFSETS[t] + i) for t, i in enumerate(row)] for row in sparse]
    lookup_share = sum(g in hot_rows for g in lookups) / len(lookups)
    input_share = sum(all(g in hot_rows for g in row) for row in inputs) / len(inputs)
    assert hot.stats["lookup_share"] == pytest.approx(lookup_share, abs=1e-12)
    assert hot.stats["input_share"] == pytest.approx(input_share, abs=1e-12)
    assert 0 < input_share < lookup_share < 1
    per_table = [hot.rows_per_table()[t] for t in range(3)]
    assert list(hot.stats["hot_rows_per_table"].values()) == per_table
    c_hits = sum(int(OFFSETS[2] + i) in hot_rows for i in sparse[:, 2]) / len(sparse)
    assert hot.stats["lookup_share_per_table"]["c"] == pytest.approx(c_hits)


def test_curve_is_monotone_and_matches_the_hot_set():
    prof = PopularityProfiler(0.5, seed=2, block_rows=100).fit(skewed_sparse(2000), TABLE_ROWS)
    budgets = [16 * 2**k for k in range(8)]
    curve = hot_input_share_curve(prof, dim=4, budgets_bytes=budgets)
    for key in ("capacity", "hot_rows", "lookup_share", "input_share"):
        values = [p[key] for p in curve]
        assert values == sorted(values), key
    assert curve[0]["input_share"] < curve[-1]["input_share"]
    for point in curve:
        stats = HotSet.from_profile(prof, point["budget_bytes"], 4).stats
        for key in ("capacity", "hot_rows", "lookup_share", "input_share"):
            assert point[key] == stats[key], (point, key)


def test_save_load_round_trip(tmp_path):
    prof = fitted(skewed_sparse(300))
    hot = HotSet.from_profile(prof, 200, 4)
    path = hot.save(tmp_path / "sub" / "hot.npz")
    assert [p.name for p in path.parent.iterdir()] == ["hot.npz"]  # no temp file left
    back = HotSet.load(path)
    np.testing.assert_array_equal(back.rows, hot.rows)
    np.testing.assert_array_equal(back.table_offsets, OFFSETS)
    assert back.table_rows == TABLE_ROWS and back.table_names == ["a", "b", "c"]
    assert back.stats == hot.stats and back.dim == 4
    ids = prof.sample_global_ids_
    np.testing.assert_array_equal(back.hot_inputs(ids), hot.hot_inputs(ids))


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(HotrecError, match="no such hot-set file"):
        HotSet.load(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not a zip\n")
    with pytest.raises(HotrecError, match="not a hotrec hot-set file"):
        HotSet.load(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(HotrecError, match="not a hotrec hot-set file"):
        HotSet.load(tmp_path / "other.npz")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1000000", 1_000_000),
        ("256MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("512KB", 512_000),
        ("2 gb", 2 * 10**9),
        ("1.5KiB", 1536),
        ("64M", 64 * 2**20),
        ("7B", 7),
        ("0", 0),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "-1MiB", "12 parsecs", "1e9", "1..2GB", "0x10"])
def test_parse_bytes_rejects_bad_text(text):
    with pytest.raises(HotrecError, match="byte size"):
        parse_bytes(text)


def test_access_cdf_rises_to_one():
    row_share, lookup_share = access_cdf(np.array([0, 5, 1, 0, 10, 4]), points=50)
    assert row_share[-1] == 1.0 and lookup_share[-1] == 1.0
    assert lookup_share[0] == pytest.approx(10 / 20)  # the top row of 6 takes half
    assert np.all(np.diff(lookup_share) >= 0) and np.all(np.diff(row_share) > 0)
