"""What every schedule provides, and the baseline: rows on host, MLPs on the device."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from hotrec.training.context import StepContext
from hotrec.training.steps import train_step
from hotrec.types import Batch


@dataclass(frozen=True)
class StepResult:
    """What one call of `Schedule.step` did."""

    loss: float  # mean loss over the trained inputs (nan when none was trained)
    samples: int  # inputs trained in this step (0: no optimizer step ran)
    skipped: int = 0  # inputs of the item filtered out without training (Slipstream)
    h2d_bytes: int = 0  # embedding bytes copied host -> device during the step
    d2h_bytes: int = 0  # and device -> host

    @property
    def trained(self) -> bool:
        return self.samples > 0

    @staticmethod
    def nothing_trained(skipped: int) -> StepResult:
        return StepResult(math.nan, 0, skipped)


class Schedule:
    """How batches flow through host and device for one training run.

    attach(ctx) installs the embedding placement; batches(epoch, start) yields the items of
    one epoch from position `start`; step(item) is one optimizer step (a subclass implements
    run(item) -> loss; step adds the accounting); sync() makes the host rows current (before
    evaluation and checkpoints); reload() refreshes device copies after the host rows changed
    (a restored checkpoint); traffic() is the embedding bytes moved so far, both ways; stats()
    reports traffic and shares.
    """

    name = "schedule"

    def attach(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def num_batches(self) -> int:
        return len(self.ctx.loader)

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        return self.ctx.loader.epoch(epoch, start)

    def step(self, item) -> StepResult:
        """One optimizer step on `item` (a batch, or what this schedule's batches() yields)."""
        h2d, d2h = self.traffic()
        loss = self.run(item)
        h2d_after, d2h_after = self.traffic()
        return StepResult(loss, len(item), 0, h2d_after - h2d, d2h_after - d2h)

    def run(self, item) -> float:
        """Forward, backward and updates on `item`; the mean loss."""
        raise NotImplementedError

    def traffic(self) -> tuple[int, int]:
        """Embedding bytes moved so far: (host -> device, device -> host)."""
        return 0, 0

    def sync(self) -> None:
        """Host rows are current after this (nothing to do when rows only live on host)."""

    def reload(self) -> None:
        """Device copies are refreshed from host rows after this."""

    def stats(self) -> dict:
        return {"schedule": self.name}

    def _step_on_device(self, micro_batches: list[Batch]) -> float:
        ctx = self.ctx
        with ctx.timer.section("transfer"):
            moved = [b.to(ctx.device, non_blocking=True) for b in micro_batches]
        return train_step(ctx, moved)


class Baseline(Schedule):
    """Hybrid CPU-GPU ("Intel-optimized DLRM"): rows gathered on host, copied to the device,
    gradients copied back and applied on host."""

    name = "baseline"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        ctx.model.embeddings.place(ctx.device)

    def run(self, item: Batch) -> float:
        return self._step_on_device([item])

    def traffic(self) -> tuple[int, int]:
        part = self.ctx.rows
        moved = part.moved_bytes if part is not None else 0
        return moved, moved  # rows down, as many gradient bytes back

    def stats(self) -> dict:
        h2d, d2h = self.traffic()
        return {"schedule": self.name, "h2d_bytes": h2d, "d2h_bytes": d2h}
