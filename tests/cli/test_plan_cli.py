"""`hotrec plan` end to end on a small dataset: measured rates, predictions, a command."""

from __future__ import annotations

import json

import pytest

from hotrec.cli.main import main


def test_plan_prints_every_schedule_and_a_command_that_trains(toy_dataset, capsys):
    assert main(["plan", "--data", str(toy_dataset), "--preset", "tiny", "--json",
                 "--budgets", "1KiB,4KiB"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    names = [(p["schedule"], p["budget_bytes"]) for p in out["predictions"]]
    assert names == [("baseline", None), ("device_only", None), ("fae", 1024),
                     ("hotline", 1024), ("fae", 4096), ("hotline", 4096)]  # fmt: skip
    rates = out["rates"]
    assert rates["net_step_s"] > 0 and rates["host_gather_s_per_row"] > 0
    assert rates["h2d_bytes_per_s"] is None  # the CPU: no link
    assert rates["net_pass_s"] == 0.0  # the CPU runs hotline as one pass: not measured
    shares = [p["lookup_share"] for p in out["popularity"]]
    assert 0 < shares[0] <= shares[1] <= 1  # counted on held-out inputs
    best = out["recommended"]
    assert f"--schedule {best['schedule']}" in out["command"]
    cmd = out["command"].split()
    assert main(cmd[1:] + ["--max-steps", "3", "--run-dir", str(toy_dataset.parent / "run")]) == 0


def test_plan_as_a_table_names_the_recommendation(toy_dataset, capsys):
    assert main(["plan", "--data", str(toy_dataset), "--preset", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "predicted per training step" in out and "recommended (*):" in out
    assert "hotrec train --data" in out


def test_plan_on_a_device_measures_the_cost_of_a_pass(toy_dataset, capsys, monkeypatch):
    from hotrec.training import plan

    sizes = []

    def step_s(cfg, schema, workdir, batches=24, bag_lengths=None, batch_size=None):
        sizes.append(batch_size or cfg.data.batch_size)
        return 0.004 + 1e-5 * sizes[-1]  # 4 ms a pass, 10 us an input

    monkeypatch.setattr(plan, "network_step_s", step_s)
    assert main(["plan", "--data", str(toy_dataset), "--preset", "tiny", "--json",
                 "--device", "emulated", "--budgets", "1KiB"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    b = sizes[0]
    assert sizes == [b, b // 8] and b >= 16
    assert out["rates"]["net_pass_s"] == pytest.approx(0.004)
    net = out["rates"]["net_step_s"]
    hotline = next(p for p in out["predictions"] if p["schedule"] == "hotline")
    assert hotline["step_s"] >= net + 0.004
    assert main(["plan", "--data", str(toy_dataset), "--preset", "tiny", "--json",
                 "--device", "emulated", "--budgets", "1KiB",
                 "--set", "placement.hotline_split='fused'"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    hotline = next(p for p in out["predictions"] if p["schedule"] == "hotline")
    assert hotline["step_s"] < out["rates"]["net_step_s"] + 0.004  # one pass: not paid again


def test_plan_refuses_what_it_cannot_predict_in_one_line(toy_dataset, capsys):
    argv = ["plan", "--data", str(toy_dataset), "--preset", "tiny"]
    assert main(argv + ["--set", "model.embedding='dhe'"]) == 2
    assert main(argv + ["--budgets", "0"]) == 2
    err = capsys.readouterr().err
    assert "table representation" in err and "--budgets needs positive" in err
    assert "Traceback" not in err
