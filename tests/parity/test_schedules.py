"""Exactness: placement schedules produce the baseline's parameters on the same sample order."""

from __future__ import annotations

import pytest
import torch

from hotrec.config import load_config
from hotrec.training.runs import start_run
from tests.conftest import write_toy_dataset

OPTIMIZERS = [("sgd", "sgd"), ("adagrad", "adagrad")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # Small tables and batches: many rows are shared between consecutive batches.
    path = tmp_path_factory.mktemp("parity") / "ds"
    return write_toy_dataset(path, rows=4000, table_rows=(40, 12, 300, 6, 90))


def make(tmp_path, data, name, schedule, sparse, dense, *extra):
    cfg = load_config(
        "tiny",
        [
            f"data.path='{data}'",
            "data.batch_size=32",
            f"optim.sparse='{sparse}'",
            f"optim.dense='{dense}'",
            "optim.sparse_lr=0.1",
            "optim.dense_lr=0.05",
            "train.checkpoint_every=0",
            f"placement.schedule='{schedule}'",
            "placement.hot_budget='1KiB'",  # 32 hot rows of D=8
            "placement.sample_fraction=1.0",
            "train.deterministic=true",
            *extra,
        ],
    )
    return start_run(cfg, tmp_path / name)


def params(trainer) -> dict[str, torch.Tensor]:
    trainer.schedule.sync()
    return {
        k: v.clone() for k, v in trainer.device.state_to_host(trainer.model.state_dict()).items()
    }


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=2e-5, msg=k)


def run_steps(trainer, batches) -> None:
    """Steps on given batches, advancing the step counter as Trainer.fit does."""
    for b in batches:
        trainer.step(b)
        trainer.state.step += 1


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", OPTIMIZERS)
def test_device_only_and_hotline_equal_baseline(tmp_path, data, sparse, dense, device):
    on = f"train.device='{device}'"
    base = make(tmp_path, data, "base", "baseline", sparse, dense, "train.epochs=2", on)
    base.fit()  # 2 epochs x 88 batches = 176 steps through the real loader
    expected = params(base)
    assert base.state.step > 150
    for name, extra in [
        ("device_only", []),
        ("hotline", []),  # auto: inline on the CPU, 2 ahead on the emulated device
        ("hotline", ["placement.lookahead=1"]),
        ("hotline", ["placement.lookahead=4"]),
    ]:
        t = make(
            tmp_path, data, f"{name}{extra}", name, sparse, dense, "train.epochs=2", on, *extra
        )
        t.fit()
        assert_same(params(t), expected)
        if name == "hotline":
            stats = t.schedule.stats()
            assert 0.0 < stats["hot_input_share"] < 1.0  # both micro-batches exercised
            assert stats["micro_batches"] == ("fused" if device == "cpu" else "split")
            if not extra:
                assert stats["lookahead"] == (0 if device == "cpu" else 2)
            if t.schedule.lookahead == 4:
                assert stats["patched_rows"] > 0  # the read-after-write hazard happened


@pytest.mark.parametrize("device", ["cpu", "emulated"])
@pytest.mark.parametrize("sparse, dense", OPTIMIZERS)
@pytest.mark.parametrize("run_length", [1, 0])
def test_fae_equals_baseline_on_fae_order(tmp_path, data, sparse, dense, run_length, device):
    on = f"train.device='{device}'"
    fae = make(
        tmp_path, data, "fae", "fae", sparse, dense, f"placement.fae_run_length={run_length}", on
    )
    base = make(tmp_path, data, "base", "baseline", sparse, dense, on)
    batches = []
    for epoch in range(2):
        batches += [fae.schedule.loader.load(ix) for ix in fae.schedule.epoch_order(epoch)]
    assert len(fae.schedule.hot_batches) > 5 and len(fae.schedule.cold_batches) > 5
    hot = [fae.schedule.prepare(b).trains_hot for b in batches]
    switches = sum(a != b for a, b in zip(hot, hot[1:], strict=False))
    assert switches > (20 if run_length == 1 else 1)
    run_steps(fae, batches)
    run_steps(base, batches)
    assert fae.schedule.stats()["syncs"] == 1  # the install's pull: a switch copies nothing
    assert_same(params(fae), params(base))


def test_hotline_without_the_hazard_patch_diverges(tmp_path, data, monkeypatch):
    """Negative control: the parity test above can fail when the hazard is ignored."""
    from hotrec.training.schedules.hotline import Hotline

    base = make(tmp_path, data, "base", "baseline", "sgd", "sgd")
    base.fit()
    monkeypatch.setattr(Hotline, "_patch", lambda self, item: None)
    t = make(tmp_path, data, "hl", "hotline", "sgd", "sgd", "placement.lookahead=4")
    t.fit()
    a, b = params(t), params(base)
    assert not torch.allclose(a["embeddings.store.weight"], b["embeddings.store.weight"], atol=1e-4)


def test_fae_interleave_and_classification(tmp_path, data):
    import numpy as np

    from hotrec.data.format import open_dataset
    from hotrec.training.schedules.fae import classify_inputs, interleave

    order = interleave(6, 3, 2)
    assert sorted(i for h, i in order if h) == list(range(6))
    assert sorted(i for h, i in order if not h) == list(range(3))
    assert [h for h, _ in order][:3] == [False, True, True]  # runs of 1 cold, 2 hot
    assert interleave(2, 3, 0) == [(False, 0), (False, 1), (False, 2), (True, 0), (True, 1)]
    fae = make(tmp_path, data, "fae", "fae", "sgd", "sgd")
    ds = open_dataset(data)
    sparse = np.asarray(ds.split("train").sparse)
    slot = fae.schedule.hotset.slot_map()
    hot = classify_inputs(sparse, ds.schema.table_offsets, slot)
    brute = [
        all(slot[v + o] >= 0 for v, o in zip(row, ds.schema.table_offsets, strict=True))
        for row in sparse
    ]
    assert hot.tolist() == brute


def test_resume_is_exact_under_hotline(tmp_path, data):
    from hotrec.training.runs import resume_run

    full = make(tmp_path, data, "full", "hotline", "adagrad", "adagrad", "train.epochs=2")
    full.fit()
    part = make(tmp_path, data, "part", "hotline", "adagrad", "adagrad", "train.epochs=2")
    part.fit(should_stop=lambda st: st.step == 50)
    resumed = resume_run(tmp_path / "part")
    resumed.fit()
    a, b = params(full), params(resumed)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("sparse, dense", OPTIMIZERS)
def test_reprofiling_moves_rows_and_stays_exact(tmp_path, data, sparse, dense):
    base = make(tmp_path, data, "base", "baseline", sparse, dense)
    base.fit()
    hl = make(
        tmp_path,
        data,
        "hl",
        "hotline",
        sparse,
        dense,
        "placement.reprofile_every=7",
        "placement.lookahead=3",
    )
    hl.fit()
    stats = hl.schedule.stats()
    assert stats["reprofiles"] > 3 and stats["rows_moved_in"] > 10
    assert_same(params(hl), params(base))

    fae = make(
        tmp_path,
        data,
        "fae",
        "fae",
        sparse,
        dense,
        "placement.reprofile_every=5",
        "placement.fae_run_length=2",
    )
    base2 = make(tmp_path, data, "base2", "baseline", sparse, dense)
    batches = [fae.schedule.loader.load(ix) for ix in fae.schedule.epoch_order(0)]
    run_steps(fae, batches)
    run_steps(base2, batches)
    assert fae.schedule.stats()["reprofiles"] > 3
    assert_same(params(fae), params(base2))


DROPOUT = ["model.interaction='masked_transformer'", "model.dropout=0.3", "model.num_heads=2",
           "placement.hotline_split='split'"]  # fmt: skip


def test_hotline_equals_baseline_with_dropout(tmp_path, data):
    """Dropout draws one mask per mini-batch: hotline's popular / non-popular split gives
    every sample the mask the unsplit batch draws."""
    base = make(tmp_path, data, "base", "baseline", "sgd", "sgd", *DROPOUT)
    base.fit()
    hl = make(tmp_path, data, "hl", "hotline", "sgd", "sgd", *DROPOUT)
    hl.fit()
    assert 0.0 < hl.schedule.stats()["hot_input_share"] < 1.0  # both micro-batches ran
    assert_same(params(hl), params(base))


def test_negative_control_per_forward_dropout_masks_diverge(tmp_path, data, monkeypatch):
    monkeypatch.setattr("hotrec.training.steps.plan_dropout", lambda *a, **k: None)
    base = make(tmp_path, data, "base", "baseline", "sgd", "sgd", *DROPOUT)
    base.fit()
    hl = make(tmp_path, data, "hl", "hotline", "sgd", "sgd", *DROPOUT)
    hl.fit()
    a, b = params(hl), params(base)
    assert not all(torch.allclose(a[k], b[k], rtol=1e-4, atol=2e-5) for k in a)
