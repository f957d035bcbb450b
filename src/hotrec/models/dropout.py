"""Dropout with one mask per mini-batch, whatever micro-batches a schedule splits it into.

A schedule that trains a mini-batch as several forwards (hotline's popular / non-popular
micro-batches) plans them first: `plan(total, positions)` gives each forward's samples'
positions in the mini-batch. The first planned forward draws the mask for all `total`
samples, in mini-batch order, from the same random stream a single forward would use; each
forward takes its samples' rows. So the split changes no sample's mask, and the step equals
the unsplit one up to float summation order. Without a plan (one forward per mini-batch) it
draws the forward's mask as it comes.
"""

from __future__ import annotations

from collections import deque

import torch
from torch import nn


class MiniBatchDropout(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = p
        self._positions: deque[torch.Tensor] = deque()
        self._total = 0
        self._mask: torch.Tensor | None = None

    def plan(self, total: int, positions: list[torch.Tensor]) -> None:
        """The coming forwards' sample positions (int64, in the inputs' memory)."""
        self._total, self._positions, self._mask = total, deque(positions), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, ...]
        if not self.training or self.p == 0:
            return x
        if not self._positions:
            return x * self._draw(x.shape, x)
        if self._mask is None:
            self._mask = self._draw((self._total, *x.shape[1:]), x)
        mask = self._mask.index_select(0, self._positions.popleft())
        if not self._positions:
            self._mask = None
        return x * mask

    def _draw(self, shape, like: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - self.p
        return like.new_empty(shape).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def plan_dropout(model: nn.Module, total: int, positions: list[torch.Tensor]) -> None:
    """Plan every MiniBatchDropout of `model` for the coming micro-batch forwards."""
    for module in model.modules():
        if isinstance(module, MiniBatchDropout) and module.p > 0:
            module.plan(total, positions)
