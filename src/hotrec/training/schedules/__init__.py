"""Training schedules: how batches flow through host and device memory."""

from __future__ import annotations

from hotrec.errors import HotrecError
from hotrec.training.schedules.base import Baseline, Schedule
from hotrec.training.schedules.device_only import DeviceOnly
from hotrec.training.schedules.fae import FAE
from hotrec.training.schedules.hotline import Hotline

SCHEDULES: dict[str, type[Schedule]] = {
    "baseline": Baseline,
    "device_only": DeviceOnly,
    "fae": FAE,
    "hotline": Hotline,
}


def make_schedule(name: str) -> Schedule:
    if name not in SCHEDULES:
        raise HotrecError(f"unknown schedule {name!r}: use {', '.join(SCHEDULES)}")
    return SCHEDULES[name]()
