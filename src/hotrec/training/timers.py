"""Time split of training steps into named sections, measured with device events.

Each section edge records an event on the device's current stream (on the CPU, the host
clock). Nothing waits at an edge: the events are read in `flush()`, once per log interval,
after one synchronization, so timing neither adds device-wide syncs to a step nor drains a
side stream that overlaps gathers with compute.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager

from torch import nn

from hotrec.device import Device


class StepTimer:
    def __init__(self, device: Device) -> None:
        self.device = device
        self._seconds: dict[str, float] = defaultdict(float)
        self._pending: list[tuple[str, object, object, int]] = []  # (section, start, end, sign)
        self._enclosing: list[str] = []

    @contextmanager
    def section(self, name: str):
        start = self.device.record_event()
        try:
            yield
        finally:
            self._pending.append((name, start, self.device.record_event(), 1))

    def watch(self, module: nn.Module, name: str) -> None:
        """Charge `module`'s forward to section `name` (and subtract it from enclosing ones)."""
        starts: list = []

        def before(_mod, _inp):
            starts.append(self.device.record_event())

        def after(_mod, _inp, _out):
            start, end = starts.pop(), self.device.record_event()
            self._pending.append((name, start, end, 1))
            for outer in self._enclosing:
                self._pending.append((outer, start, end, -1))

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    @contextmanager
    def enclosing(self, name: str):
        """Like section(), minus the time of watched modules inside it."""
        self._enclosing.append(name)
        try:
            with self.section(name):
                yield
        finally:
            self._enclosing.pop()

    def flush(self) -> None:
        """Read every recorded section (one synchronization)."""
        if not self._pending:
            return
        self.device.synchronize()
        for name, start, end, sign in self._pending:
            self._seconds[name] += sign * self.device.elapsed_ms(start, end) / 1e3
        self._pending.clear()

    @property
    def seconds(self) -> dict[str, float]:
        """Seconds per section so far (reads the pending events first)."""
        self.flush()
        return self._seconds

    def split(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}
