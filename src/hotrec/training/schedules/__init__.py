"""Training schedules: how batches flow through host and device memory."""

from __future__ import annotations

from hotrec.errors import HotrecError
from hotrec.training.schedules.base import Baseline, Schedule
from hotrec.training.schedules.device_only import DeviceOnly
from hotrec.training.schedules.fae import FAE
from hotrec.training.schedules.hotline import Hotline
from hotrec.training.schedules.slipstream import Slipstream

SCHEDULES: dict[str, type[Schedule]] = {
    "baseline": Baseline,
    "device_only": DeviceOnly,
    "fae": FAE,
    "hotline": Hotline,
}


def make_schedule(name: str, slipstream: bool = False) -> Schedule:
    """The named schedule, with the Slipstream filter over it when asked (fae, hotline)."""
    if name not in SCHEDULES:
        raise HotrecError(f"unknown schedule {name!r}: use {', '.join(SCHEDULES)}")
    base = SCHEDULES[name]()
    return Slipstream(base) if slipstream else base
