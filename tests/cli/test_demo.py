"""`hotrec demo` (what `make demo` runs), at a small size: it synthesizes the dataset once,
trains one epoch of the criteo-kaggle preset, says the precision it picked and prints the
results table."""

from __future__ import annotations

import json

from hotrec.cli import demo
from hotrec.cli.main import main
from hotrec.device import make_device
from hotrec.training.steps import resolve_precision


def test_the_demo_synthesizes_trains_and_reports(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "DEMO_ROWS", 20_000)
    monkeypatch.setattr(demo, "DEMO_SCALE", 0.0005)
    data, run = tmp_path / "data", tmp_path / "run"
    argv = ["demo", "--data", str(data), "--run-dir", str(run), "--device", "cpu"]
    assert main(argv) == 0
    out = " ".join(capsys.readouterr().out.split())
    picked, why = resolve_precision("auto", make_device("cpu"))
    assert f"synthesizing {data}" in out and f"precision: {picked} ({why})" in out
    result = json.loads((run / "result.json").read_text())
    assert result["stopped"] == "completed" and result["epochs_done"] == 1
    assert 0.5 < result["test"]["auc"] <= 1.0 and result["precision"] == picked
    assert main(argv) == 0  # the dataset is made once; the run directory is trained again
    assert "synthesizing" not in capsys.readouterr().out
