"""Compaction: the inputs Slipstream keeps are re-packed into full mini-batches, so skipped
inputs remove whole steps (opt-in: placement.slipstream_compact). Every input of the epoch is
trained once or skipped once (label and dense sums match), across a checkpoint too; steps
fall by what was skipped, and each step's learning rate is scaled so that an epoch moves the
model as far as the base schedule's; with nothing skipped (D = 0) the run equals the base
schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hotrec.config import load_config
from hotrec.data.synthetic import synthesize
from hotrec.errors import HotrecError
from hotrec.training.runs import resume_run, start_run
from hotrec.training.schedules.compaction import Compactor

SS = ["placement.hot_budget='4KiB'", "placement.slipstream=true", "placement.slipstream_sample=0.2",
      "train.checkpoint_every=0", "placement.sample_fraction=1.0", "train.eval_every=0"]  # fmt: skip


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cp") / "tiny", profile="tiny", rows=40_000)


def test_the_queue_keeps_arrival_order_and_gives_each_row_once():
    c = Compactor(4)
    assert c.add(np.array([0, 1, 2]), weight=2.0) is None and len(c) == 3
    rows, scale = c.add(np.array([3, 4, 5]), weight=1.0)
    assert rows.tolist() == [0, 1, 2, 3] and scale == (3 * 2.0 + 1.0) / 4  # mean weight
    assert c.add(np.array([6]), weight=4.0) is None
    restored = Compactor(4)
    restored.load_state(c.state())  # what a checkpoint keeps
    rows, scale = restored.add(np.array([7, 8]), last=True)  # the epoch's last: all of it
    assert rows.tolist() == [4, 5, 6, 7, 8] and scale == (1.0 + 1.0 + 4.0 + 1.0 + 1.0) / 5
    assert len(restored) == 0 and restored.add(np.zeros(0, np.int64), last=True) is None


class Tally:
    """Sums (label, dense) of the inputs a Slipstream schedule trains and of those it skips."""

    def __init__(self) -> None:
        self.trained = np.zeros(2)
        self.skipped = np.zeros(2)
        self.step_sizes: list[int] = []
        self.lr_scales: list[tuple[float, float]] = []  # (MLPs', rows') learning rate / base

    def watch(self, schedule) -> None:
        base_step, skippable = schedule.base.step, schedule._skippable
        ctx = schedule.ctx
        dense_lr, row_lr = ctx.dense_opt.param_groups[0]["lr"], ctx.store.lr

        def step(item):
            self.trained += sums(item.batch)
            self.step_sizes.append(len(item))
            in_step = ctx.dense_opt.param_groups[0]["lr"] / dense_lr, ctx.store.lr / row_lr
            self.lr_scales.append(in_step)
            return base_step(item)

        def skip(item, position):
            mask = skippable(item, position)
            b = item.batch
            self.skipped += [
                float(b.label[mask].double().sum()),
                float(b.dense[mask].double().sum()),
            ]
            return mask

        schedule.base.step, schedule._skippable = step, skip


def sums(batch) -> np.ndarray:
    return np.array([float(batch.label.double().sum()), float(batch.dense.double().sum())])


def all_rows(trainer, epochs: int) -> np.ndarray:
    train = trainer.dataset.split("train")
    return epochs * np.array([np.asarray(train.label, np.float64).sum(),
                              np.asarray(train.dense, np.float32).astype(np.float64).sum()])  # fmt: skip


@pytest.mark.parametrize("schedule", ["baseline", "fae", "hotline"])
def test_each_input_trains_or_is_skipped_once_and_steps_fall(tmp_path, skewed, schedule):
    opts = [f"data.path='{skewed}'", f"placement.schedule='{schedule}'", "train.epochs=2", *SS]
    runs = {}
    for compact in (True, False):
        cfg = load_config("tiny", [*opts, f"placement.slipstream_compact={str(compact).lower()}"])
        trainer = start_run(cfg, tmp_path / f"c{compact}")
        tally = Tally()
        tally.watch(trainer.schedule)
        runs[compact] = (trainer, trainer.fit(), tally)
    trainer, result, tally = runs[True]
    p = result["placement"]
    assert p["skipped_inputs"] > 0
    np.testing.assert_allclose(tally.trained + tally.skipped, all_rows(trainer, 2), rtol=1e-9)
    arrivals = 2 * trainer.schedule.num_batches()
    assert result["steps"] == arrivals - p["steps_saved"] and p["steps_saved"] > 0
    full = trainer.cfg.data.batch_size
    short = [n for n in tally.step_sizes if n != full]
    assert len(short) <= 2 * (4 if schedule == "fae" else 1)  # an epoch's ends (fae: streams')
    # each step's learning rate is scaled by its inputs' mean arrival weight (arrival size /
    # kept of it): summed over steps, scale x inputs gives every input of the epoch, skipped
    # ones too, as the base schedule's steps do; negative control: unscaled, it falls short
    scales = np.array(tally.lr_scales)
    assert np.array_equal(scales[:, 0], scales[:, 1]) and scales.max() > 1.0
    n = np.array(tally.step_sizes)
    samples = result["samples"]
    assert abs(float((scales[:, 0] * n).sum()) - samples) < 1e-6 * samples
    assert n.sum() < samples - p["skipped_inputs"] / 2
    assert trainer.ctx.dense_opt.param_groups[0]["lr"] == trainer.cfg.optim.dense_lr
    # without compaction every arrival steps on what is left of it: no step saved
    plain = runs[False][1]
    assert plain["steps"] > result["steps"] and "steps_saved" not in plain["placement"]


def test_a_checkpoint_keeps_the_queue_and_the_resumed_run_trains_it(tmp_path, skewed, monkeypatch):
    """Stopped while kept inputs wait in the queue: the resumed run trains them (every input
    trained or skipped once over both runs). Negative control: a checkpoint that drops the
    queue loses those inputs."""

    def stopped_and_resumed(run_dir, keep_queue: bool) -> np.ndarray:
        cfg = load_config("tiny", [f"data.path='{skewed}'", "placement.schedule='baseline'",
                                   "train.epochs=1", *SS, "placement.slipstream_compact=true"])  # fmt: skip
        first = start_run(cfg, run_dir)
        tally = Tally()
        tally.watch(first.schedule)
        waiting = lambda st: len(first.schedule.compactor) > 0  # noqa: E731
        assert first.fit(should_stop=waiting)["stopped"] == "interrupted"
        queued = first.schedule.compactor.rows.copy()
        if not keep_queue:
            monkeypatch.setattr(Compactor, "state", lambda self: {})
        first.save()
        monkeypatch.undo()
        if keep_queue:  # queued inputs are not resumed where nothing would train them
            off = {"placement": {"slipstream_compact": False}}
            with pytest.raises(HotrecError, match=f"holds {len(queued):,} inputs"):
                resume_run(run_dir, off, save_config=False)
        second = resume_run(run_dir)
        if keep_queue:
            assert second.schedule.compactor.rows.tolist() == queued.tolist()
        tally.watch(second.schedule)
        assert second.fit()["stopped"] == "completed"
        return tally.trained + tally.skipped - all_rows(first, 1)

    assert np.allclose(stopped_and_resumed(tmp_path / "kept", True), 0, atol=1e-6)
    assert not np.allclose(stopped_and_resumed(tmp_path / "dropped", False), 0, atol=1e-6)


@pytest.mark.parametrize("schedule", ["baseline", "fae"])
def test_with_nothing_skipped_compaction_equals_the_base_schedule(tmp_path, skewed, schedule):
    """D = 0: every batch runs as it came (fae's partial hot-stream batches are not queued)."""
    opts = [f"data.path='{skewed}'", f"placement.schedule='{schedule}'", "train.max_steps=120",
            *SS]  # fmt: skip
    base = start_run(load_config("tiny", opts + ["placement.slipstream=false"]), tmp_path / "b")
    base.fit()
    zero = ["placement.slipstream_target=0.0", "placement.slipstream_compact=true"]
    ss = start_run(load_config("tiny", opts + zero), tmp_path / "s")
    assert ss.fit()["placement"]["skipped_inputs"] == 0
    a, b = base.model.state_dict(), ss.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
