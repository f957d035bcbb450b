"""Training schedules: how batches flow through host and device memory.

`SCHEDULES` is the one registry. The `train` command's `--schedule` choices and help, the
name check before a run writes anything, the Slipstream compatibility check and the options
a resume in the middle of an epoch must keep all derive from it. Entries name their class as
"module:Class" and are imported only when a run makes one, so commands that do not train
(and `hotrec --help`) never import torch through this module.

Adding a schedule: one module with a `Schedule` subclass, one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hotrec.errors import HotrecError

if TYPE_CHECKING:
    from hotrec.config import PlacementConfig
    from hotrec.training.schedules.base import Schedule

# Options that decide which samples make up the rest of an epoch under every schedule.
COMMON_ORDER = (("data", "batch_size"), ("data", "shuffle"), ("train", "seed"))


@dataclass(frozen=True)
class ScheduleEntry:
    target: str  # "module:Class"; a module without dots lives in this package
    summary: str  # one line for --help
    order: tuple[str, ...] = ()  # placement options that change this schedule's batch order
    slipstream: bool = False  # the Slipstream filter may run over it


SCHEDULES: dict[str, ScheduleEntry] = {
    "baseline": ScheduleEntry("base:Baseline", "rows on host, MLPs on the device", slipstream=True),
    "device_only": ScheduleEntry(
        "device_only:DeviceOnly", "every row in device memory", slipstream=True
    ),
    "fae": ScheduleEntry(
        "fae:FAE",
        "hot inputs as device-only batches, cold ones the baseline way",
        ("fae_run_length", "hot_budget", "hotset", "sample_fraction"),
        slipstream=True,
    ),
    "hotline": ScheduleEntry(
        "hotline:Hotline",
        "popular / non-popular micro-batches, cold rows gathered ahead",
        slipstream=True,
    ),
}


def check_schedule(placement: PlacementConfig) -> ScheduleEntry:
    """The registry entry of the configured schedule; one-line errors for an unknown name or
    Slipstream over a schedule it cannot filter. Runs before a run writes anything."""
    entry = SCHEDULES.get(placement.schedule)
    if entry is None:
        raise HotrecError(f"unknown schedule {placement.schedule!r}: use {', '.join(SCHEDULES)}")
    if placement.slipstream and not entry.slipstream:
        over = " or ".join(n for n, e in SCHEDULES.items() if e.slipstream)
        raise HotrecError(f"placement.slipstream works over the {over} schedule")
    return entry


def order_options(schedule: str) -> tuple[tuple[str, str], ...]:
    """(section, key) of every option that decides the batch order under `schedule`."""
    extra = SCHEDULES[schedule].order if schedule in SCHEDULES else ()
    return COMMON_ORDER + (("placement", "schedule"),) + tuple(("placement", k) for k in extra)


def schedule_class(name: str) -> type[Schedule]:
    module, cls = SCHEDULES[name].target.split(":")
    if "." not in module:
        module = f"{__name__}.{module}"
    return getattr(importlib.import_module(module), cls)


def make_schedule(placement: PlacementConfig) -> Schedule:
    """The configured schedule, with the Slipstream filter over it when asked."""
    check_schedule(placement)
    base = schedule_class(placement.schedule)()
    if not placement.slipstream:
        return base
    from hotrec.training.schedules.slipstream import Slipstream

    return Slipstream(base)


def help_text() -> str:
    """One line per schedule for --help."""
    return "; ".join(f"{name}: {e.summary}" for name, e in SCHEDULES.items())
