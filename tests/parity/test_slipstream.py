"""Slipstream over every schedule: exact when it skips nothing; skips about D of hot inputs;
bounded AUC loss."""

from __future__ import annotations

import pytest
import torch

from hotrec.config import load_config
from hotrec.data.synthetic import synthesize
from hotrec.training.runs import start_run
from tests.conftest import write_toy_dataset


def run(tmp_path, data, name, schedule, *extra, preset="tiny"):
    cfg = load_config(
        preset,
        [
            f"data.path='{data}'",
            "train.checkpoint_every=0",
            f"placement.schedule='{schedule}'",
            "placement.sample_fraction=1.0",
            *extra,
        ],
    )
    trainer = start_run(cfg, tmp_path / name)
    return trainer, trainer.fit()


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("ss") / "ds", rows=6000)


@pytest.mark.parametrize("schedule", ["baseline", "device_only", "fae", "hotline"])
def test_target_zero_equals_the_base_schedule(tmp_path, toy, schedule):
    common = ["placement.hot_budget='2KiB'", "train.epochs=2", "data.batch_size=64"]
    base, _ = run(tmp_path, toy, "base", schedule, *common)
    ss, res = run(
        tmp_path,
        toy,
        "ss",
        schedule,
        *common,
        "placement.slipstream=true",
        "placement.slipstream_target=0.0",
    )
    assert res["placement"]["skipped_inputs"] == 0
    a, b = base.model.state_dict(), ss.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("ss") / "tiny", profile="tiny", rows=40_000)


@pytest.mark.parametrize("schedule", ["baseline", "device_only", "fae", "hotline"])
def test_skipped_share_lands_near_the_target(tmp_path, skewed, schedule):
    """In every epoch where a threshold was found, the share of hot inputs skipped after the
    fit is within tolerance (0.08) of the target D = 0.3."""
    _, res = run(
        tmp_path,
        skewed,
        "ss",
        schedule,
        "placement.hot_budget='4KiB'",
        "train.epochs=2",
        "placement.slipstream=true",
        "placement.slipstream_sample=0.2",
    )
    found = [e for e in res["placement"]["slipstream_epochs"] if e["threshold"] is not None]
    assert found
    for e in found:
        assert abs(e["skipped"] / e["hot_inputs_after_fit"] - 0.3) <= 0.08, e


@pytest.fixture(scope="module")
def kaggle(tmp_path_factory):
    root = tmp_path_factory.mktemp("kaggle")
    return synthesize(root / "kaggle", profile="criteo-kaggle", rows=300_000, scale=0.001)


@pytest.mark.parametrize("schedule", ["baseline", "device_only", "fae", "hotline"])
def test_quality_bound_on_the_criteo_kaggle_profile(tmp_path, kaggle, schedule):
    """Stated bound: val AUC within 0.002 of the base schedule on synthetic criteo-kaggle
    data, with the default D = 0.3, over every schedule. Except under fae, an input counts as
    stale with 25 of its 26 lookups stale: at this size a row in nearly every input changes
    between 0.01 and 0.1 over the window of the schedules whose every batch trains hot rows,
    so with all 26 required the skippable share jumps from 0 to 1 across the target band and
    no threshold is found (nothing is skipped; hotline did the same before this test)."""
    common = ["placement.hot_budget='64KiB'", "data.batch_size=512", "train.epochs=1"]
    alpha = [] if schedule == "fae" else ["placement.slipstream_alpha=25"]
    _, base = run(tmp_path, kaggle, "base", schedule, *common)
    _, ss = run(tmp_path, kaggle, "ss", schedule, *common, "placement.slipstream=true", *alpha)
    assert ss["placement"]["skipped_inputs"] > 0
    assert abs(ss["val"]["auc"] - base["val"]["auc"]) <= 0.002


@pytest.mark.parametrize("schedule", ["baseline", "device_only", "fae", "hotline"])
def test_freeze_mode_with_target_zero_equals_the_base_schedule(tmp_path, toy, schedule):
    common = ["placement.hot_budget='2KiB'", "data.batch_size=64"]
    base, _ = run(tmp_path, toy, "base", schedule, *common)
    ss, _ = run(
        tmp_path,
        toy,
        "ss",
        schedule,
        *common,
        "placement.slipstream=true",
        "placement.slipstream_mode='freeze'",
        "placement.slipstream_target=0.0",
    )
    a, b = base.model.state_dict(), ss.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("schedule", ["baseline", "device_only", "fae", "hotline"])
def test_freeze_mode_freezes_rows_and_keeps_every_input(tmp_path, skewed, schedule):
    trainer, res = run(
        tmp_path,
        skewed,
        "ss",
        schedule,
        "placement.hot_budget='4KiB'",
        "placement.slipstream=true",
        "placement.slipstream_mode='freeze'",
        "placement.slipstream_sample=0.2",
    )
    p = res["placement"]
    train_rows = trainer.dataset.meta["splits"]["train"]
    assert p["skipped_inputs"] == 0
    assert trainer.state.samples == trainer.cfg.train.epochs * train_rows  # every input trained
    found = [e for e in p["slipstream_epochs"] if e["threshold"] is not None]
    assert found and all(e["frozen_rows"] > 0 for e in found)


def freeze_filter(slot_map: torch.Tensor, frozen: list[bool], dim: int):
    """Slipstream's freeze-mode update filter over a given hot set, without a training run."""
    from types import SimpleNamespace

    from hotrec.device import HostDevice
    from hotrec.training.schedules.slipstream import Slipstream

    ss = Slipstream.__new__(Slipstream)
    ss.ctx = SimpleNamespace(device=HostDevice())
    ss.slot_map, ss.frozen = slot_map, torch.tensor(frozen)
    ss.frozen_grads = torch.zeros(len(frozen), dim)
    return ss


def test_frozen_rows_are_not_updated_but_their_gradients_are_kept():
    from hotrec.embeddings.store import EmbeddingStore
    from hotrec.placement.hot_cold import DeviceReplica, RoutedEmbedding

    store = EmbeddingStore([6], 2, optimizer="sgd", lr=0.5)
    replica = DeviceReplica(store, [1, 3, 4], torch.device("cpu"))
    replica.pull()
    before = replica.weight.clone()
    slot_map = torch.tensor([-1, 0, -1, 1, 2, -1])
    emb = RoutedEmbedding(store, torch.tensor([0]), replica, slot_map, torch.device("cpu"))
    ss = freeze_filter(slot_map, [False, True, False], 2)
    emb.update_filter = ss._hold_frozen
    emb.mode = "device"
    emb(torch.tensor([[1], [3], [3]])).sum().backward()  # slots 0, 1, 1
    emb.step()
    assert torch.equal(replica.weight[1], before[1])  # frozen: unchanged
    torch.testing.assert_close(replica.weight[0], before[0] - 0.5)
    torch.testing.assert_close(ss.frozen_grads[1], torch.full((2,), 2.0))


def test_frozen_hot_rows_are_not_updated_by_host_mode_steps():
    """fae's cold batches run in host mode: frozen hot rows must stay put there too."""
    from hotrec.embeddings.store import EmbeddingStore
    from hotrec.placement.hot_cold import DeviceReplica, RoutedEmbedding

    store = EmbeddingStore([5, 4], 2, optimizer="adagrad", lr=0.5)
    replica = DeviceReplica(store, [1, 6], torch.device("cpu"))
    replica.pull()
    slot_map = torch.full((9,), -1)
    slot_map[torch.tensor([1, 6])] = torch.arange(2)
    emb = RoutedEmbedding(store, torch.tensor([0, 5]), replica, slot_map, torch.device("cpu"))
    ss = freeze_filter(slot_map, [True, False], 2)
    emb.update_filter = ss._hold_frozen
    weight, state = store.weight.clone(), store.opt_state.clone()
    emb.mode = "host"
    emb(torch.tensor([[1, 1], [2, 0]])).sum().backward()  # rows 1 (hot, frozen), 6, 2, 5
    emb.step()
    assert torch.equal(store.weight[1], weight[1]) and store.opt_state[1] == state[1]
    assert not torch.equal(store.weight[2], weight[2])  # a cold row is updated
    torch.testing.assert_close(ss.frozen_grads[0], torch.ones(2))


def test_slipstream_sample_counts_match_the_epoch(tmp_path, skewed):
    trainer, res = run(
        tmp_path,
        skewed,
        "ss",
        "hotline",
        "placement.hot_budget='4KiB'",
        "placement.slipstream=true",
        "placement.slipstream_sample=0.2",
    )
    assert res["placement"]["skipped_inputs"] > 0
    assert (
        trainer.state.samples == trainer.cfg.train.epochs * trainer.dataset.meta["splits"]["train"]
    )


def test_slipstream_with_reprofiling_is_refused(toy):
    from hotrec.errors import HotrecError

    with pytest.raises(HotrecError, match="cannot be combined"):
        load_config(
            "tiny",
            [
                f"data.path='{toy}'",
                "placement.schedule='fae'",
                "placement.slipstream=true",
                "placement.reprofile_every=5",
            ],
        )


def test_random_selection_is_a_control_of_the_same_share(tmp_path, skewed, monkeypatch):
    """select=random skips about as many hot inputs as the staleness test (the share the fit
    found), drawn without looking at rows: some of them are not stale, and only hot inputs
    are drawn; the draw is seeded (a second run trains the same model)."""
    from hotrec.training.schedules.slipstream import Slipstream

    seen = []
    original = Slipstream._skippable

    def spy(self, item, position):
        skip = original(self, item, position)
        stale, _ = self.detector.decide(item.slots_per_input())
        seen.append((self.select, skip, stale, item.all_hot()))
        return skip

    monkeypatch.setattr(Slipstream, "_skippable", spy)
    common = ["placement.hot_budget='4KiB'", "placement.slipstream=true"]
    common += ["placement.slipstream_sample=0.2"]
    _, stale = run(tmp_path, skewed, "stale", "fae", *common)
    pick = "placement.slipstream_select='random'"
    first, rand = run(tmp_path, skewed, "random", "fae", *common, pick)
    second, _ = run(tmp_path, skewed, "again", "fae", *common, pick)

    assert (rand["placement"]["select"], stale["placement"]["select"]) == ("random", "stale")
    share = rand["placement"]["skipped_share_of_hot"]
    assert share > 0 and abs(share - stale["placement"]["skipped_share_of_hot"]) <= 0.08
    by_staleness = [(s, st) for sel, s, st, _ in seen if sel == "stale"]
    assert all(torch.equal(s, st) for s, st in by_staleness)  # the spy sees what is skipped
    drawn = [(s, st, hot) for sel, s, st, hot in seen if sel == "random"]
    picked, stale_mask, hot = (torch.cat(x) for x in zip(*drawn, strict=True))
    assert not (picked & ~hot).any()
    assert (picked & ~stale_mask).any() and (stale_mask & ~picked).any()
    a, b = first.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_random_selection_outside_skip_mode_is_refused(toy):
    from hotrec.errors import HotrecError

    with pytest.raises(HotrecError, match="control of skip mode"):
        load_config(
            "tiny",
            [
                f"data.path='{toy}'",
                "placement.schedule='fae'",
                "placement.slipstream=true",
                "placement.slipstream_mode='freeze'",
                "placement.slipstream_select='random'",
            ],
        )
