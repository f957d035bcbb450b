"""The schedule protocol, and the baseline: rows on host, MLPs on the device.

Every schedule does its host-side work once per batch in `prepare(batch) -> Prepared`
(global rows, replica slots, micro-batch split, cold-row gathers), run ahead in the loader
thread or a look-ahead worker, and its device work in `step(item) -> StepResult`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hotrec.placement.staleness import PAD
from hotrec.training.context import StepContext
from hotrec.training.steps import batch_to_device, select, train_step
from hotrec.types import Bags, Batch


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


@dataclass
class Prepared:
    """One mini-batch after the host-side work of `prepare`."""

    batch: Batch  # on host
    ids: torch.Tensor | None  # int64 [B, K] global rows (None: a representation without rows;
    # a multi-hot batch: [L], one per id of its sample-major bags)
    slots: torch.Tensor | None = None  # int64 [B, K] hot-set slot of each lookup, -1 = cold
    generation: int = 0  # the hot set the slots were computed with (changes at a re-profile)
    trains_hot: bool = True  # a batch of the hot stream (fae: False for its cold batches)
    lookups: Bags | None = None  # multi-hot: the row part's key bags, which `ids` follow

    def __len__(self) -> int:
        return len(self.batch)

    def select(self, keep: torch.Tensor) -> Prepared:
        """The item restricted to the inputs where `keep` (bool [B]) holds, in order; what was
        computed for them is kept, not computed again."""
        at = self.per_lookup(keep)
        return dataclasses.replace(
            self,
            batch=select(self.batch, keep),
            ids=None if self.ids is None else self.ids[at],
            slots=None if self.slots is None else self.slots[at],
            lookups=None if self.lookups is None else self.lookups.select(keep),
        )

    def per_lookup(self, keep: torch.Tensor) -> torch.Tensor:
        """A mask over inputs (bool [B]) as a mask over `ids` and `slots` (their rows [B, K],
        or with multi-hot bags the flat [L], one per id of the key bags)."""
        return keep if self.lookups is None else keep[self.lookups.owners()]

    def slots_per_input(self) -> torch.Tensor:
        """`slots` with one row per input: [B, K], or with multi-hot bags each input's slots
        padded with PAD (-2: not a lookup; -1 stays "cold") to the widest input [B, W]."""
        if self.lookups is None:
            return self.slots
        return per_input(self.slots, self.lookups.lengths.sum(dim=1), PAD)

    def all_hot(self) -> torch.Tensor:
        """bool [B]: every lookup of the input is a hot row (needs `slots`)."""
        if self.lookups is None:
            return (self.slots >= 0).all(dim=1)
        cold = (self.slots < 0).to(torch.int64)  # [L]
        per_input = torch.zeros(len(self.batch), dtype=torch.int64)
        return per_input.index_add_(0, self.lookups.owners(), cold) == 0


def per_input(flat: torch.Tensor, counts: torch.Tensor, fill: int) -> torch.Tensor:
    """Values [L] of inputs holding `counts` [B] of them each, in order -> [B, W] rows padded
    with `fill` (W = the largest count, at least 1)."""
    width = max(int(counts.max()) if len(counts) else 0, 1)
    out = torch.full((len(counts), width), fill, dtype=flat.dtype)
    owner = torch.arange(len(counts)).repeat_interleave(counts)
    place = torch.arange(len(flat)) - (torch.cumsum(counts, 0) - counts)[owner]
    out[owner, place] = flat
    return out


class Schedule:
    """How batches flow through host and device for one training run.

    attach(ctx) installs the embedding placement; batches(epoch, start) yields the prepared
    items of one epoch from position `start`; prepare(batch) is the host-side work of one
    batch and step(item) one optimizer step (a subclass implements run(item) -> loss; step
    adds the accounting); sync() makes the host rows current (before evaluation and
    checkpoints); reload() refreshes device copies after the host rows changed (a restored
    checkpoint); traffic() is the embedding bytes moved so far, both ways; stats() reports
    traffic and shares. `hotset` is the placement's hot set, for schedules that have one;
    `compact`: kept inputs are re-packed into full batches (a filter that skips inputs).
    """

    name = "schedule"
    hotset = None
    compact = False

    def attach(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.generation = 0  # bumped when the hot set changes: older items are prepared again

    # -- what a checkpoint keeps besides the model -------------------------------------------
    def state(self) -> dict:
        """Tensors and numbers a resume needs besides the model (a filter's queue)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Take back what `state` returned, after a checkpoint was restored."""

    # -- the epoch ------------------------------------------------------------------------------
    def num_batches(self) -> int:
        return len(self.ctx.loader)

    def hot_batches_per_epoch(self) -> int:
        """Batches per epoch that train hot rows (all of them, unless the schedule says)."""
        return self.num_batches()

    def epoch_rows(self, epoch: int) -> list[np.ndarray]:
        """Row indices of the training split in each batch of `epoch`, in order."""
        loader, bs = self.ctx.loader, self.ctx.loader.batch_size
        blocks = loader.batch_order(epoch)
        return [np.arange(b * bs, min((b + 1) * bs, loader.rows)) for b in blocks]

    def batches(
        self, epoch: int, start: int = 0, prepare: Callable[[Batch], Prepared] | None = None
    ) -> Iterator[Prepared]:
        """Prepared items of one epoch from `start` on, prepared in the loader thread (by
        `prepare` when a filter wraps this schedule's own)."""
        return self.ctx.loader.epoch(epoch, start, transform=prepare or self.prepare)

    # -- host side ------------------------------------------------------------------------------
    def global_ids(self, sparse: torch.Tensor) -> torch.Tensor | None:
        """Per-table ids [B, T] -> int64 [B, K] global rows on the host (None without rows)."""
        part = self.ctx.rows
        if part is None:
            return None
        return part.global_ids(sparse)

    def prepare(self, batch: Batch) -> Prepared:
        if batch.bags is not None and self.ctx.rows is not None:  # multi-hot: each id's row [L]
            keyed = self.ctx.rows.key_bags(batch.bags)
            rows = self.ctx.rows.bag_rows(keyed)
            return Prepared(batch, rows, generation=self.generation, lookups=keyed)
        return Prepared(batch, self.global_ids(batch.sparse), generation=self.generation)

    # -- device side ----------------------------------------------------------------------------
    def step(self, item: Prepared | Batch) -> StepResult:
        """One optimizer step on `item` (a prepared item, or a plain batch prepared now)."""
        if isinstance(item, Batch) or item.generation != self.generation:
            item = self.prepare(item if isinstance(item, Batch) else item.batch)
        h2d, d2h = self.traffic()
        loss = self.run(item)
        h2d_after, d2h_after = self.traffic()
        return StepResult(loss, len(item), 0, h2d_after - h2d, d2h_after - d2h)

    def run(self, item: Prepared) -> float:
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
            moved = [batch_to_device(ctx.device, b) for b in micro_batches]
        return train_step(ctx, moved)

    def _expect_rows(self, item: Prepared) -> None:
        """Hand the item's global rows to the row part, so its forward does not recompute them."""
        if item.ids is not None:
            self.ctx.rows.expect(item.ids.reshape(-1))


class Baseline(Schedule):
    """Hybrid CPU-GPU ("Intel-optimized DLRM"): rows gathered on host, copied to the device,
    gradients copied back and applied on host."""

    name = "baseline"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        ctx.model.embeddings.place(ctx.device)

    def run(self, item: Prepared) -> float:
        self._expect_rows(item)
        return self._step_on_device([item.batch])

    def traffic(self) -> tuple[int, int]:
        part = self.ctx.rows
        moved = part.moved_bytes if part is not None else 0
        return moved, moved  # rows down, as many gradient bytes back

    def stats(self) -> dict:
        h2d, d2h = self.traffic()
        return {"schedule": self.name, "h2d_bytes": h2d, "d2h_bytes": d2h}
