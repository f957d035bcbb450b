"""The run directory: resolved config, metrics.jsonl, checkpoint and final result."""

from __future__ import annotations

import json
import os
from pathlib import Path

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


class MetricsLog:
    """Append-only JSON lines; on resume, records after the checkpoint's step are dropped so
    the log reads as if the run had never been interrupted."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            kept = [
                line
                for line in path.read_text().splitlines()
                if line.strip() and _kept(json.loads(line), keep_until_step)
            ]
            path.write_text("".join(line + "\n" for line in kept))
        elif keep_until_step is None:
            path.write_text("")

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _kept(record: dict, until_step: int) -> bool:
    """Records up to the checkpoint's step, minus end-of-run evaluations (the run goes on)."""
    return record.get("step", 0) <= until_step and not record.get("final")
