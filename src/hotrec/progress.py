"""Progress for long work: a rich bar on a terminal; without one (CI, nohup, a pipe, a log
file) a plain line every HOTREC_PROGRESS_EVERY seconds (30) with the count, rate, ETA and the
task's own text (loss, val AUC). HOTREC_PROGRESS=1/0 forces the bar on / everything off.
Tables and messages are never wrapped at 80 columns without a terminal."""

from __future__ import annotations

import os
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

WIDE = 240  # columns for output that goes to a file or a pipe: tables keep their width


def wide_console(stderr: bool = False) -> Console:
    """A console of the terminal's width, or WIDE columns without a terminal (COLUMNS, when
    set, wins: rich reads it)."""
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty() or "COLUMNS" in os.environ
    return Console(stderr=stderr, width=None if terminal else WIDE)


console = wide_console(stderr=True)


def _forced() -> str | None:
    return os.environ.get("HOTREC_PROGRESS")


def progress_enabled() -> bool:
    """Bars show on a terminal; HOTREC_PROGRESS=1/0 forces them on/off."""
    forced = _forced()
    if forced is not None:
        return forced not in ("0", "", "false")
    return sys.stderr.isatty()


def plain_every_s() -> float:
    """Seconds between plain progress lines without a terminal (HOTREC_PROGRESS_EVERY)."""
    try:
        return max(0.0, float(os.environ.get("HOTREC_PROGRESS_EVERY", "30")))
    except ValueError:
        return 30.0


class PlainProgress(Progress):
    """rich's Progress bookkeeping without its live display: every `every_s` seconds one
    plain line per task, e.g. `train: 1,200/10,000 steps (12%), 34,512 samples/s, ETA 4m12s,
    loss 0.4521, val AUC 0.7712 (best 0.7712 at step 1,000)`."""

    def __init__(self, *columns, every_s: float, unit: str = "", **kwargs) -> None:
        super().__init__(*columns, disable=True, **kwargs)
        self.every_s, self.unit = every_s, unit
        self._last: dict[TaskID, float] = {}
        self._start: dict[TaskID, tuple[float, float]] = {}

    def add_task(self, description, start=True, total=100.0, completed=0, visible=True,
                 **fields) -> TaskID:  # fmt: skip
        task = super().add_task(description, start, total, completed, visible, **fields)
        now = time.monotonic()
        self._start[task], self._last[task] = (now, float(completed)), now
        return task

    def update(self, task_id: TaskID, **kwargs) -> None:
        super().update(task_id, **kwargs)
        self._maybe_say(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._maybe_say(task_id)

    def _maybe_say(self, task_id: TaskID) -> None:
        now = time.monotonic()
        if now - self._last.get(task_id, now) < self.every_s:
            return
        self._last[task_id] = now
        print(self.line(task_id, now), file=sys.stderr, flush=True)

    def line(self, task_id: TaskID, now: float) -> str:
        task = next(t for t in self.tasks if t.id == task_id)
        t0, done0 = self._start[task_id]
        parts = [f"{task.description}: {task.completed:,.0f}"]
        if task.total:
            parts[0] += f"/{task.total:,.0f}"
        parts[0] += f" {self.unit}" if self.unit else ""
        if task.total:
            parts[0] += f" ({task.completed / task.total:.0%})"
        rate = str(task.fields.get("rate") or "")
        if rate:
            parts.append(rate)
        speed = (task.completed - done0) / (now - t0) if now > t0 else 0.0
        if task.total and speed > 0:
            parts.append(f"ETA {_duration((task.total - task.completed) / speed)}")
        info = str(task.fields.get("info") or "").strip(", ")
        if info:
            parts.append(info)
        return ", ".join(parts)


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def make_progress(unit: str = "rows", enabled: bool = True) -> Progress:
    """A bar with count, rate in `unit`/s, elapsed and remaining time, plus a free text field
    (`enabled` False: shown nowhere, e.g. on every rank but the first). Without a terminal
    (and HOTREC_PROGRESS unset): plain lines instead (PlainProgress)."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    if enabled and _forced() is None and not sys.stderr.isatty():
        return PlainProgress(*columns, every_s=plain_every_s(), unit=unit, console=console)
    return Progress(
        *columns, console=console, disable=not (enabled and progress_enabled()), transient=False
    )


def format_rate(count: float, seconds: float, unit: str) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M {unit}/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k {unit}/s"
    return f"{rate:.0f} {unit}/s"
