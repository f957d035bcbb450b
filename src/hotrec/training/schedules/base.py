"""What every schedule provides, and the baseline: rows on host, MLPs on the device."""

from __future__ import annotations

from collections.abc import Iterator

from hotrec.embeddings.parts import row_part
from hotrec.training.steps import train_step
from hotrec.types import Batch


class Schedule:
    """How batches flow through host and device for one training run.

    attach(trainer) installs the embedding placement; batches(epoch, start) yields the items of
    one epoch from position `start`; step(item) is one optimizer step; sync() makes the host
    rows current (before evaluation and checkpoints); reload() refreshes device copies after
    the host rows changed (a restored checkpoint); stats() reports traffic and shares.
    """

    name = "schedule"

    def attach(self, trainer) -> None:
        self.trainer = trainer

    def num_batches(self) -> int:
        return len(self.trainer.train_loader)

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        return self.trainer.train_loader.epoch(epoch, start)

    def step(self, item) -> float:
        raise NotImplementedError

    def sync(self) -> None:
        """Host rows are current after this (nothing to do when rows only live on host)."""

    def reload(self) -> None:
        """Device copies are refreshed from host rows after this."""

    def stats(self) -> dict:
        return {"schedule": self.name}

    def _step_on_device(self, micro_batches: list[Batch]) -> float:
        t = self.trainer
        with t.timer.section("transfer"):
            moved = [b.to(t.device, non_blocking=True) for b in micro_batches]
        return train_step(t, moved, t.state.step + 1)


class Baseline(Schedule):
    """Hybrid CPU-GPU ("Intel-optimized DLRM"): rows gathered on host, copied to the device,
    gradients copied back and applied on host."""

    name = "baseline"

    def attach(self, trainer) -> None:
        super().attach(trainer)
        trainer.model.embeddings.place(trainer.device)

    def step(self, item: Batch) -> float:
        return self._step_on_device([item])

    def stats(self) -> dict:
        part = row_part(self.trainer.model.embeddings)
        moved = part.moved_bytes if part is not None else 0
        return {"schedule": self.name, "h2d_bytes": moved, "d2h_bytes": moved}
