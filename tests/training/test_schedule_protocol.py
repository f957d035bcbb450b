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
