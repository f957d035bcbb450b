import pytest
import torch

from hotrec.placement.staleness import StalenessDetector


def snapshots(changes):
    before = torch.zeros(len(changes), 4)
    after = before.clone()
    after[:, 2] = torch.tensor(changes)  # L-inf change of each row = its entry
    after[:, 0] = -torch.tensor(changes) / 2  # smaller in another coordinate: max wins
    return before, after


def test_change_is_linf_and_bisection_hits_the_target():
    changes = [i / 1000 for i in range(100)]  # row r changes by r/1000
    before, after = snapshots(changes)
    torch.testing.assert_close(
        StalenessDetector().fit(before, after, torch.zeros(1, 1, dtype=torch.long)).change_,
        torch.tensor(changes),
    )
    slots = torch.arange(100).view(100, 1)  # input i looks up row i only
    d = StalenessDetector(target_share=0.3, tolerance=0.02).fit(before, after, slots)
    assert d.threshold_ is not None and abs(d.skip_share_ - 0.3) <= 0.02
    assert d.skippable(slots).float().mean().item() == pytest.approx(d.skip_share_)
    assert d.stale_.tolist() == [c < d.threshold_ for c in changes]


def test_alpha_counts_stale_lookups():
    before, after = snapshots([0.0, 0.0, 0.05, 0.05])
    slots = torch.tensor([[0, 1], [0, 2], [2, 3]])
    all_d = StalenessDetector(target_share=1 / 3, tolerance=0.01).fit(before, after, slots)
    assert all_d.skippable(slots).tolist() == [True, False, False]  # alpha = all lookups
    one = StalenessDetector(target_share=2 / 3, tolerance=0.01, alpha=1).fit(before, after, slots)
    assert one.skippable(slots).tolist() == [True, True, False]


def test_no_threshold_reaches_the_target_skips_nothing():
    before, after = snapshots([0.5] * 10)  # every row moved more than max_threshold
    slots = torch.arange(10).view(10, 1)
    d = StalenessDetector(target_share=0.3).fit(before, after, slots)
    assert d.threshold_ is None and not d.skippable(slots).any() and d.skip_share_ == 0.0
    zero = StalenessDetector(target_share=0.0).fit(before, after, slots)
    assert zero.threshold_ is None


def test_padded_multi_hot_inputs_count_only_their_lookups():
    """A multi-hot input's row of slots is padded with -2 (not a lookup): "all lookups stale"
    and alpha count its real lookups only (negative control: padding with a real slot of a
    moving row would change the answer)."""
    before, after = snapshots([0.0, 0.0, 0.05, 0.05])
    slots = torch.tensor([[0, -2, -2], [0, 1, -2], [0, 2, 3], [2, -2, -2]])
    all_d = StalenessDetector(target_share=0.5, tolerance=0.01).fit(before, after, slots)
    assert all_d.skippable(slots).tolist() == [True, True, False, False]
    one = StalenessDetector(target_share=0.5, tolerance=0.01, alpha=2).fit(before, after, slots)
    assert one.skippable(slots).tolist() == [True, True, False, False]  # [0]: 1 of its 1 lookup
    padded_wrong = slots.clone()
    padded_wrong[padded_wrong == -2] = 3  # a moving row instead of the pad
    assert all_d.skippable(padded_wrong).tolist() == [False, False, False, False]
