"""Wall-clock time split of training steps into named sections."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

import torch
from torch import nn


class StepTimer:
    """Accumulates seconds per section; on CUDA it synchronizes at section edges so the split
    is honest (asynchronous kernels would otherwise be charged to whoever waits for them)."""

    def __init__(self, device: torch.device) -> None:
        self.sync = device.type == "cuda"
        self.seconds: dict[str, float] = defaultdict(float)

    def _now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def section(self, name: str):
        start = self._now()
        try:
            yield
        finally:
            self.seconds[name] += self._now() - start

    def watch(self, module: nn.Module, name: str) -> None:
        """Charge `module`'s forward to section `name` (and subtract it from the enclosing one)."""
        starts: list[float] = []

        def before(_mod, _inp):
            starts.append(self._now())

        def after(_mod, _inp, _out):
            elapsed = self._now() - starts.pop()
            self.seconds[name] += elapsed
            self.seconds["_nested"] += elapsed

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    @contextmanager
    def enclosing(self, name: str):
        """Like section(), minus time charged by watched modules inside it."""
        nested_before = self.seconds["_nested"]
        start = self._now()
        try:
            yield
        finally:
            nested = self.seconds["_nested"] - nested_before
            self.seconds[name] += self._now() - start - nested

    def split(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items() if not k.startswith("_")}
