import json

import pytest
import torch

from hotrec.config import load_config
from hotrec.training import runlog
from hotrec.training.runs import resume_run, start_run
from hotrec.training.trainer import NonFiniteLoss


def tiny_config(data, *extra):
    return load_config("tiny", [f"data.path='{data}'", "train.checkpoint_every=7", *extra])


def params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


@pytest.mark.parametrize("sparse_opt, dense_opt", [("sgd", "sgd"), ("adagrad", "adam")])
def test_resume_ends_with_exactly_the_uninterrupted_parameters(
    tmp_path, toy_dataset, sparse_opt, dense_opt
):
    cfg = tiny_config(
        toy_dataset,
        f"optim.sparse='{sparse_opt}'",
        f"optim.dense='{dense_opt}'",
        "optim.dense_lr=0.01",
    )
    full = start_run(cfg, tmp_path / "full")
    full_result = full.fit()
    assert full_result["stopped"] == "completed"

    # Interrupt in the middle of epoch 1 (not on a checkpoint boundary), then resume.
    part = start_run(cfg, tmp_path / "part")
    result = part.fit(should_stop=lambda st: st.step == 11)
    assert result["stopped"] == "interrupted" and result["steps"] == 11
    resumed = resume_run(tmp_path / "part")
    assert resumed.state.step == 11
    resumed.fit()
    a, b = params(full), params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The metrics log reads as if never interrupted: train records at the same steps.
    steps = lambda run: [r["step"] for r in runlog.read_metrics(run) if r["kind"] == "train"]  # noqa: E731
    assert steps(tmp_path / "part") == steps(tmp_path / "full")


def test_training_beats_a_constant_predictor_and_writes_the_run_dir(tmp_path, toy_dataset):
    trainer = start_run(tiny_config(toy_dataset, "train.eval_every=20"), tmp_path / "run")
    result = trainer.fit()
    import numpy as np

    from hotrec.data.format import open_dataset

    rate = float(np.mean(open_dataset(toy_dataset).split("test").label))
    constant_logloss = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert result["test"]["auc"] > 0.6  # a constant predictor has 0.5
    assert result["test"]["logloss"] < constant_logloss
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "result.json"}
    kinds = {r["kind"] for r in runlog.read_metrics(tmp_path / "run")}
    assert kinds == {"train", "val", "test"}
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["embedding_dim"] == 8
    assert set(result["time_split_s"]) >= {"data", "embedding", "mlp", "optimizer"}


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, toy_dataset):
    trainer = start_run(tiny_config(toy_dataset), tmp_path / "run")
    poison_at = 10

    original = trainer.step

    def step(batch):
        if trainer.state.step + 1 == poison_at:
            batch.batch.dense[0, 0] = float("nan")  # a prepared item
        return original(batch)

    trainer.step = step
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 10.*step 7"):
        trainer.fit()
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == 7
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert not list((tmp_path / "run").glob(".*tmp*"))


def test_existing_run_needs_resume_or_overwrite(tmp_path, toy_dataset):
    start_run(tiny_config(toy_dataset, "train.max_steps=2"), tmp_path / "run").fit()
    from hotrec.errors import HotrecError

    with pytest.raises(HotrecError, match="already holds a run"):
        start_run(tiny_config(toy_dataset), tmp_path / "run")


def test_crash_resume_log_equals_uninterrupted_log(tmp_path, toy_dataset):
    """A crash between checkpoints: the resumed metrics.jsonl equals the uninterrupted one."""
    cfg = tiny_config(toy_dataset, "train.log_every=3")
    start_run(cfg, tmp_path / "full").fit()

    class Crash(Exception):
        pass

    def crash(st):
        if st.step == 12:  # checkpoints at 7 and 14: the last good one is step 7
            raise Crash

    with pytest.raises(Crash):
        start_run(cfg, tmp_path / "part").fit(should_stop=crash)
    resume_run(tmp_path / "part").fit()

    def records(run):
        return [
            {k: v for k, v in r.items() if k not in ("samples_per_s",)}
            for r in runlog.read_metrics(run)
        ]

    assert records(tmp_path / "part") == records(tmp_path / "full")


def test_overwrite_removes_the_old_runs_files(tmp_path, toy_dataset):
    start_run(tiny_config(toy_dataset, "train.max_steps=2"), tmp_path / "run").fit()
    start_run(tiny_config(toy_dataset), tmp_path / "run", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["config.json"]


def test_incompatible_resume_is_an_error_and_keeps_the_config(tmp_path, toy_dataset):
    from hotrec.errors import HotrecError

    start_run(tiny_config(toy_dataset, "train.max_steps=2"), tmp_path / "run").fit()
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(HotrecError, match="checkpoint does not fit"):
        resume_run(tmp_path / "run", {"model": {"interaction": "cat"}})
    assert (tmp_path / "run" / "config.json").read_text() == before
    resume_run(tmp_path / "run", {"train": {"device": "cpu"}}, save_config=False)
    assert (tmp_path / "run" / "config.json").read_text() == before


def test_mid_epoch_resume_refuses_options_that_change_the_order(tmp_path, toy_dataset):
    from hotrec.errors import HotrecError

    start_run(tiny_config(toy_dataset, "train.max_steps=3"), tmp_path / "run").fit()
    with pytest.raises(HotrecError, match="cannot change data.batch_size"):
        resume_run(tmp_path / "run", {"data": {"batch_size": 64}})
    resume_run(tmp_path / "run", {"train": {"max_steps": 0}}).fit()  # order kept: fine


def test_deterministic_option_turns_on_deterministic_kernels(tmp_path, toy_dataset):
    before = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(False)
        start_run(tiny_config(toy_dataset, "train.max_steps=1"), tmp_path / "a")
        assert not torch.are_deterministic_algorithms_enabled()  # off by default
        start_run(tiny_config(toy_dataset, "train.deterministic=true"), tmp_path / "b")
        assert torch.are_deterministic_algorithms_enabled()
        import os

        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    finally:
        torch.use_deterministic_algorithms(before)
