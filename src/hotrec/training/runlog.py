"""The run directory: resolved config, metrics.jsonl, checkpoint and final result."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hotrec.errors import HotrecError

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
            kept = [json.dumps(r) for r in _parse(path) if _kept(r, keep_until_step)]
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)
        elif keep_until_step is None:
            path.write_text("")

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return _parse(path)


def _parse(path: Path) -> list[dict]:
    """The records of a metrics log. A torn last line (a write cut short by a crash) is
    dropped; any other line that is not a JSON object is an error naming the line."""
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise HotrecError(f"{path} is not text: {e}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if i == len(numbered) - 1 and not line.rstrip().endswith("}"):
                break  # torn last line
            raise HotrecError(f"{path}:{n}: not a metrics record; fix or remove that line")
        records.append(record)
    return records


def _kept(record: dict, until_step: int) -> bool:
    """Records up to the checkpoint's step, minus end-of-run evaluations (the run goes on)."""
    return record.get("step", 0) <= until_step and not record.get("final")
