"""The schedule protocol: schedules see a StepContext, never the trainer."""

from __future__ import annotations

import re
from pathlib import Path

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
    from hotrec.training.schedules.base import StepResult
    from hotrec.training.trainer import start_run

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
