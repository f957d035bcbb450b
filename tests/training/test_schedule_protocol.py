"""The schedule protocol: schedules see a StepContext, never the trainer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SCHEDULES = Path(__file__).resolve().parents[2] / "src" / "hotrec" / "training" / "schedules"


def trainer_references(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\btrainer\b|Trainer\b|training\.trainer", line.split("#", 1)[0]):
                found.append(f"{path.name}:{n}: {line.strip()}")
    return found


def test_no_schedule_module_references_the_trainer():
    assert trainer_references(SCHEDULES) == []


def test_negative_control_the_scan_sees_a_reference(tmp_path):
    (tmp_path / "s.py").write_text("def attach(self, trainer):\n    self.t = trainer.model\n")
    assert len(trainer_references(tmp_path)) == 2


def test_every_schedule_returns_a_step_result_with_its_traffic(tmp_path, toy_dataset):
    import math

    from hotrec.config import load_config
    from hotrec.training.runs import start_run
    from hotrec.training.schedules.base import StepResult

    moved = {}
    for schedule in ("baseline", "device_only", "fae", "hotline"):
        cfg = load_config(
            "tiny",
            [f"data.path='{toy_dataset}'", f"placement.schedule='{schedule}'",
             "placement.hot_budget='1KiB'", "data.batch_size=64"],
        )  # fmt: skip
        trainer = start_run(cfg, tmp_path / schedule)
        batch = trainer.train_loader.load(0)
        before = trainer.schedule.stats()["h2d_bytes"]  # fae's initial replica pull included
        result = trainer.step(batch)
        assert isinstance(result, StepResult) and result.trained
        assert result.samples == len(batch) == 64 and result.skipped == 0
        assert math.isfinite(result.loss)
        moved[schedule] = result.h2d_bytes
        assert trainer.schedule.stats()["h2d_bytes"] - before == result.h2d_bytes
    assert moved["device_only"] == 0 < moved["hotline"] <= moved["baseline"]
    skipped = StepResult.nothing_trained(5)
    assert not skipped.trained and skipped.skipped == 5 and math.isnan(skipped.loss)


def test_a_toy_schedule_registered_in_one_line_trains_from_the_cli(
    tmp_path, toy_dataset, monkeypatch
):
    import json

    import torch

    from hotrec.cli.main import main
    from hotrec.training import schedules
    from hotrec.training.checkpoint import load_checkpoint

    monkeypatch.setitem(
        schedules.SCHEDULES,
        "halves",
        schedules.ScheduleEntry("tests.training.toy_schedule:Halves", "two micro-batches"),
    )
    runs = {}
    for name in ("halves", "baseline"):
        run = tmp_path / name
        argv = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--schedule", name,
                "--run-dir", str(run), "--max-steps", "12"]  # fmt: skip
        assert main(argv) == 0
        runs[name] = run
    placement = json.loads((runs["halves"] / "result.json").read_text())["placement"]
    assert placement == {"schedule": "halves", "micro_batches": 24}
    a = load_checkpoint(runs["halves"] / "checkpoint.pt")["model"]
    b = load_checkpoint(runs["baseline"] / "checkpoint.pt")["model"]
    for k in a:  # the same math as one pass: equal up to float summation order
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_schedule_names_are_checked_against_the_registry_before_anything_is_written(
    tmp_path, toy_dataset, capsys, monkeypatch
):
    from hotrec.training import schedules
    from tests.untrusted.helpers import one_line_error

    monkeypatch.setitem(  # a schedule the Slipstream filter is not declared for
        schedules.SCHEDULES,
        "halves",
        schedules.ScheduleEntry("tests.training.toy_schedule:Halves", "two micro-batches"),
    )
    base = ["train", "--data", str(toy_dataset), "--preset", "tiny"]
    run = tmp_path / "run"
    one_line_error(capsys, base + ["--run-dir", str(run), "--set", "placement.schedule='nope'"],
                   "unknown schedule 'nope'", "baseline, device_only, fae, hotline")  # fmt: skip
    one_line_error(capsys, base + ["--run-dir", str(run), "--schedule", "halves", "--slipstream"],
                   "slipstream works over the baseline or device_only or fae or hotline")  # fmt: skip
    assert not run.exists()


def test_resume_order_options_derive_from_the_registry():
    from hotrec.training.schedules import order_options

    assert ("placement", "fae_run_length") in order_options("fae")
    assert ("placement", "fae_run_length") not in order_options("hotline")
    assert ("data", "batch_size") in order_options("baseline")
    assert ("placement", "schedule") in order_options("device_only")


def test_commands_that_do_not_train_do_not_import_torch_or_numpy():
    import subprocess
    import sys

    code = "import sys, hotrec.cli.main; sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


SCHEDULE_NAMES = ["baseline", "device_only", "fae", "hotline"]


def count_row_work(tmp_path, data, monkeypatch, schedule, slipstream, steps=5):
    """Calls of the global-row and slot computations over `steps` training steps."""
    from collections import Counter

    from hotrec.config import load_config
    from hotrec.embeddings.table import TableEmbedding
    from hotrec.placement.hot_cold import RoutedEmbedding
    from hotrec.training.runs import start_run
    from hotrec.training.schedules.slipstream import Slipstream

    cfg = load_config("tiny", [f"data.path='{data}'", f"placement.schedule='{schedule}'",
                               "placement.hot_budget='1KiB'", "data.batch_size=64",
                               f"placement.slipstream={str(slipstream).lower()}"])  # fmt: skip
    trainer = start_run(cfg, tmp_path / "run")
    calls: Counter = Counter()

    def counted(cls, name, kind):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            calls[kind] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counted(TableEmbedding, "global_ids", "ids")
    counted(RoutedEmbedding, "global_ids", "ids")
    counted(RoutedEmbedding, "slots", "slots")
    counted(Slipstream, "slots", "slots")
    counted(type(trainer.schedule), "prepare", "prepared")  # the loader may prepare ahead
    items = trainer.schedule.batches(0)  # 5 steps: before Slipstream's first fit
    for _ in range(steps):
        trainer.ctx.step = trainer.state.step
        assert trainer.schedule.step(next(items)).trained
        trainer.state.step += 1
    items.close()
    assert calls["prepared"] >= steps
    return calls


@pytest.mark.parametrize("slipstream", [False, True])
@pytest.mark.parametrize("schedule", SCHEDULE_NAMES)
def test_global_rows_and_slots_are_computed_once_per_batch(
    tmp_path, toy_dataset, monkeypatch, schedule, slipstream
):
    calls = count_row_work(tmp_path, toy_dataset, monkeypatch, schedule, slipstream)
    assert calls["ids"] == calls["prepared"]  # steps and forwards computed none of their own
    has_slots = schedule in ("fae", "hotline") or slipstream
    assert calls["slots"] == (calls["prepared"] if has_slots else 0)


def test_negative_control_a_forward_that_recomputes_rows_is_counted(
    tmp_path, toy_dataset, monkeypatch
):
    from hotrec.training.schedules.base import Schedule

    monkeypatch.setattr(Schedule, "_expect_rows", lambda self, item: None)
    calls = count_row_work(tmp_path, toy_dataset, monkeypatch, "baseline", False)
    assert calls["ids"] == calls["prepared"] + 5
