"""Validation-driven training: periodic validation by default, best.pt, early stopping, and
`hotrec eval` on the best model."""

from __future__ import annotations

import json

import torch

from hotrec.cli.main import main
from hotrec.config import load_config
from hotrec.training import runlog
from hotrec.training.checkpoint import load_checkpoint
from hotrec.training.runs import resume_run, start_run
from hotrec.training.trainer import AUTO_EVAL_STEPS, Trainer


def config(data, *extra):
    return load_config("tiny", [f"data.path='{data}'", "train.checkpoint_every=0", *extra])


def scripted_val(monkeypatch, aucs: list[float]):
    """Validation AUCs in this order (the test split and anything after: the real metrics)."""
    real = Trainer.eval_split

    def eval_split(self, split, max_rows=0):
        metrics = real(self, split, max_rows)
        if split == "val" and aucs:
            metrics = {**metrics, "auc": aucs.pop(0)}
        return metrics

    monkeypatch.setattr(Trainer, "eval_split", eval_split)


def test_auto_validation_runs_once_per_epoch_and_keeps_the_best(tmp_path, toy_dataset):
    trainer = start_run(config(toy_dataset, "train.epochs=3"), tmp_path / "run")
    per_epoch = trainer.schedule.num_batches()
    assert per_epoch <= AUTO_EVAL_STEPS and trainer.eval_interval() == per_epoch
    result = trainer.fit()
    vals = [r for r in runlog.read_metrics(tmp_path / "run") if r["kind"] == "val"]
    periodic = [r["step"] for r in vals if not r.get("final")]  # the final one covers the last
    assert periodic == [per_epoch, 2 * per_epoch]
    assert [r["step"] for r in vals if r.get("final")][0] == 3 * per_epoch
    best = load_checkpoint(tmp_path / "run" / runlog.BEST)
    assert best["state"]["best_step"] == result["best_step"]
    assert result["val"]["auc"] == max(r["auc"] for r in vals)


def test_early_stopping_stops_and_the_best_model_is_what_is_kept(
    tmp_path, toy_dataset, monkeypatch
):
    scripted_val(monkeypatch, [0.70, 0.72, 0.71, 0.69, 0.60])  # best at the 2nd; 0.60: final
    cfg = config(toy_dataset, "train.epochs=20", "train.eval_every=5", "train.early_stop=2")
    trainer = start_run(cfg, tmp_path / "run")
    result = trainer.fit()
    assert result["stopped"] == "early_stopped" and result["steps"] == 20  # 4 validations
    assert result["best_step"] == 10
    assert result["last"]["step"] == 20 and result["last"]["val"]["auc"] == 0.60
    best = load_checkpoint(tmp_path / "run" / runlog.BEST)
    last = load_checkpoint(tmp_path / "run" / runlog.CHECKPOINT)
    assert best["state"]["step"] == 10 and last["state"]["step"] == 20
    model = trainer.model.state_dict()  # fit returns with the kept (best) model loaded
    for k, v in best["model"].items():
        assert torch.equal(model[k].cpu(), v), k
    assert not all(torch.equal(best["model"][k], last["model"][k]) for k in best["model"])


def test_without_patience_training_runs_to_the_end(tmp_path, toy_dataset, monkeypatch):
    """Negative control: the same falling AUCs without --early-stop train every epoch."""
    scripted_val(monkeypatch, [0.70, 0.72, 0.71, 0.69, 0.68])
    cfg = config(toy_dataset, "train.epochs=3", "train.eval_every=5")
    result = start_run(cfg, tmp_path / "run").fit()
    assert result["stopped"] == "completed" and result["epochs_done"] == 3


def test_resume_carries_the_best_so_far(tmp_path, toy_dataset, monkeypatch):
    scripted_val(monkeypatch, [0.80, 0.70])
    cfg = config(toy_dataset, "train.epochs=2", "train.eval_every=5", "train.early_stop=3")
    start_run(cfg, tmp_path / "run").fit(should_stop=lambda st: st.step == 12)
    resumed = resume_run(tmp_path / "run")
    st = resumed.state
    assert (st.best_auc, st.best_step, st.since_best) == (0.80, 5, 1)


def test_eval_uses_the_best_checkpoint_unless_told(tmp_path, toy_dataset, monkeypatch, capsys):
    scripted_val(monkeypatch, [0.90, 0.50, 0.50])
    cfg = config(toy_dataset, "train.epochs=3", "train.eval_every=5", "train.max_steps=15")
    start_run(cfg, tmp_path / "run").fit()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--json"]) == 0
    best = json.loads(capsys.readouterr().out)
    assert main(["eval", str(tmp_path / "run"), "--json", "--checkpoint", "last"]) == 0
    last = json.loads(capsys.readouterr().out)
    assert (best["step"], best["checkpoint"]) == (5, "best.pt")
    assert (last["step"], last["checkpoint"]) == (15, "checkpoint.pt")
    assert best["auc"] != last["auc"]


def test_a_final_model_that_is_best_is_known_as_best_after_resume(
    tmp_path, toy_dataset, monkeypatch
):
    scripted_val(monkeypatch, [0.60, 0.90])  # one periodic validation, then the final: best
    cfg = config(toy_dataset, "train.epochs=1", "train.eval_every=5")
    start_run(cfg, tmp_path / "run").fit()
    state = load_checkpoint(tmp_path / "run" / runlog.CHECKPOINT)["state"]
    assert (state["best_auc"], state["best_step"]) == (0.90, 9)
    assert load_checkpoint(tmp_path / "run" / runlog.BEST)["state"]["step"] == 9
