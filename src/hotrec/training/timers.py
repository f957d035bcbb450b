"""Time split of training steps into named sections, measured with device events.

Each section edge records an event on the device's current stream (on the CPU, the host
clock). Nothing waits at an edge: the events are read in `flush()`, once per log interval,
after one synchronization, so timing neither adds device-wide syncs to a step nor drains a
side stream that overlaps gathers with compute.
"""

from __future__ import annotations

import collections
import types
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


class SyncsPerStep:
    """Device-to-host synchronizations per training step, on a device that counts them:
    `summary` is {mean, max, steps, total, by_op} (empty where nothing is counted)."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.summary: dict = {}
        self.held = 0  # syncs of batches that ran no step (a filter's queue), for the next one
        self.held_ops: collections.Counter[str] = collections.Counter()

    @contextmanager
    def step(self):
        """Around one batch; set `.trained = False` on what it yields when no optimizer step
        ran: its syncs then count toward the next step."""
        mark = types.SimpleNamespace(trained=True)
        dev = self.device
        if not dev.counts_syncs:
            yield mark
            return
        before, ops_before = dev.syncs, dev.sync_ops.copy()
        yield mark
        n = dev.syncs - before + self.held
        ops = dev.sync_ops - ops_before + self.held_ops
        if not mark.trained:
            self.held, self.held_ops = n, ops
            return
        self.held, self.held_ops = 0, collections.Counter()
        s = self.summary or {"mean": 0.0, "max": 0, "steps": 0, "total": 0, "by_op": {}}
        for op, count in ops.items():
            s["by_op"][op] = s["by_op"].get(op, 0) + count
        s["steps"] += 1
        s["total"] += n
        s["max"] = max(s["max"], n)
        s["mean"] = round(s["total"] / s["steps"], 3)
        self.summary = s
