"""Progress bars for long work (rich), silent when stderr is not a terminal unless forced."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def progress_enabled() -> bool:
    """Bars show on a terminal; HOTREC_PROGRESS=1/0 forces them on/off."""
    forced = os.environ.get("HOTREC_PROGRESS")
    if forced is not None:
        return forced not in ("0", "", "false")
    return sys.stderr.isatty()


def make_progress(unit: str = "rows", enabled: bool = True) -> Progress:
    """A bar with count, rate in `unit`/s, elapsed and remaining time, plus a free text field
    (`enabled` False: shown nowhere, e.g. on every rank but the first)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not (enabled and progress_enabled()),
        transient=False,
    )


def format_rate(count: float, seconds: float, unit: str) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    if rate >= 1e6:
        return f"{rate / 1e6:.2f}M {unit}/s"
    if rate >= 1e3:
        return f"{rate / 1e3:.1f}k {unit}/s"
    return f"{rate:.0f} {unit}/s"
