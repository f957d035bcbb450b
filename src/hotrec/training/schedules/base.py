"""What every schedule provides, and the baseline: rows on host, MLPs on the device."""

from __future__ import annotations

from collections.abc import Iterator

from hotrec.training.context import StepContext
from hotrec.training.steps import train_step
from hotrec.types import Batch


class Schedule:
    """How batches flow through host and device for one training run.

    attach(ctx) installs the embedding placement; batches(epoch, start) yields the items of
    one epoch from position `start`; step(item) is one optimizer step; sync() makes the host
    rows current (before evaluation and checkpoints); reload() refreshes device copies after
    the host rows changed (a restored checkpoint); stats() reports traffic and shares.
    """

    name = "schedule"

    def attach(self, ctx: StepContext) -> None:
        self.ctx = ctx

    def num_batches(self) -> int:
        return len(self.ctx.loader)

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        return self.ctx.loader.epoch(epoch, start)

    def step(self, item) -> float:
        raise NotImplementedError

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

    def step(self, item: Batch) -> float:
        return self._step_on_device([item])

    def stats(self) -> dict:
        part = self.ctx.rows
        moved = part.moved_bytes if part is not None else 0
        return {"schedule": self.name, "h2d_bytes": moved, "d2h_bytes": moved}
