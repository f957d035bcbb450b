"""The run directory: resolved config, metrics.jsonl, checkpoint and final result."""

from __future__ import annotations

import json
from pathlib import Path

from hotrec.fileio import append_json_line, read_json_lines, write_lines_atomic
from hotrec.progress import console

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"  # the checkpoint of the best validation AUC so far
RESULT = "result.json"


class MetricsLog:
    """Append-only JSON lines; on resume, records after the checkpoint's step are dropped so
    the log reads as if the run had never been interrupted."""

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        if keep_until_step is not None and path.exists():
            records = read_json_lines(path, on_torn=lambda n: _say_torn(path, n))
            write_lines_atomic(path, [json.dumps(r) for r in records if _kept(r, keep_until_step)])
        elif keep_until_step is None:
            path.write_text("")

    def write(self, record: dict) -> None:
        append_json_line(self.path, record)


class NoLog:
    """The metrics log of a rank other than the first: nothing is written."""

    def write(self, record: dict) -> None:
        pass


def kept_checkpoint(run_dir: Path, which: str = "best") -> str:
    """The checkpoint file evaluation and artifacts use: best.pt when the run kept one and
    `which` is "best", else checkpoint.pt."""
    if which == "best" and (Path(run_dir) / BEST).is_file():
        return BEST
    return CHECKPOINT


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return read_json_lines(path)


def _kept(record: dict, until_step: int) -> bool:
    """Records up to the checkpoint's step, minus end-of-run evaluations (the run goes on)."""
    return record.get("step", 0) <= until_step and not record.get("final")


def _say_torn(path: Path, line: int) -> None:
    console.print(
        f"{path}: dropped its torn last line {line} (a write cut short when the run stopped); "
        "the log goes on from the checkpoint"
    )
