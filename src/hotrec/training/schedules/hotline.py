"""hotline: popular / non-popular micro-batches with a look-ahead gather (Adnan et al., ISCA 2024).

Every mini-batch is split by "all lookups hot" into a popular and a non-popular micro-batch.
A worker thread runs `lookahead` batches ahead: it prepares each upcoming batch (global
rows, slots, the split, the lookup plans) and gathers its unique cold rows from host memory
(into pinned memory, copied to the GPU on a side stream when there is one) while the device
computes. On the CPU the same work runs inline by default: there is no copy to hide, and a
worker would only compete with the step's thread team. Both micro-batches form one optimizer step with the mean loss of the whole
mini-batch, so the math equals the baseline's.

Read-after-write hazard: a prefetched batch may hold cold rows that a later-finished step
updated on host. Steps are numbered (`seq`) and every host row keeps the number of the step
that last wrote it (int32 [R], 4 bytes per row, kept here); before a prefetched batch runs,
the rows written after its gather are gathered again (patched): one index_select and a
comparison, not a set intersection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from hotrec.data.loader import prefetched
from hotrec.device import Event
from hotrec.placement.hot_cold import LookupPlan, plan_lookups
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Prepared
from hotrec.training.schedules.placed import Placed, placement_stats
from hotrec.training.steps import batch_to_device, select, train_step
from hotrec.types import Batch

AUTO_LOOKAHEAD = 2  # batches gathered ahead on a device with its own memory


@dataclass
class HotlinePrepared(Prepared):
    """A batch split into micro-batches, with its cold rows already gathered."""

    popular: torch.Tensor | None = None  # bool [B]: all lookups hot
    cold_rows: torch.Tensor | None = None  # int64 [U] sorted unique global rows of cold lookups
    values: torch.Tensor | None = None  # [U, D] their values, on the device
    seq: int = 0  # host updates applied when the values were read
    ready: Event | None = None  # the side-stream copy of `values` (None: host memory)
    micro: list[Batch] = field(default_factory=list)  # popular, then non-popular (non-empty)
    plans: list[LookupPlan] = field(default_factory=list)  # one per micro-batch
    positions: list[torch.Tensor] = field(default_factory=list)  # each one's samples in batch

    fused: bool = False  # one forward of the whole batch, in batch order (no split)

    def select(self, keep: torch.Tensor) -> HotlinePrepared:
        """Restricted to `keep`; cold rows and their values stay as gathered (a superset)."""
        base = super().select(keep)
        return split_micro(dataclasses.replace(base, popular=self.popular[keep]))


def split_micro(item: HotlinePrepared) -> HotlinePrepared:
    """The popular and non-popular micro-batches of an item and the plan of each forward;
    fused: the whole batch as one forward, each lookup routed by the plan."""
    if item.fused:
        rows, slots = item.ids.reshape(-1), item.slots.reshape(-1)
        item.micro, item.plans = [item.batch], [plan_lookups(rows, slots, item.cold_rows)]
        item.positions = [torch.arange(len(item.batch))]
        return item
    micro, plans, positions = [], [], []
    for part in (item.popular, ~item.popular):
        if not bool(part.any()):
            continue
        micro.append(select(item.batch, part))
        at = item.per_lookup(part)
        rows, slots = item.ids[at].reshape(-1), item.slots[at].reshape(-1)
        plans.append(plan_lookups(rows, slots, item.cold_rows))
        positions.append(torch.nonzero(part).squeeze(1))
    item.micro, item.plans, item.positions = micro, plans, positions
    return item


class Hotline(Placed):
    name = "hotline"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        ahead = ctx.placement.lookahead  # -1: auto; several ranks gather inline (collective)
        auto = 0 if ctx.device.is_host or ctx.dist.active else AUTO_LOOKAHEAD
        self.lookahead = ahead if ahead >= 0 else auto
        self.store = self.routed.store
        self.seq = 0
        # seq of each host row's last write; inline (lookahead 0) nothing is gathered ahead
        rows = self.store.num_rows
        self.written = torch.zeros(rows, dtype=torch.int32) if self.lookahead else None
        self.side = None if ctx.device.is_host else ctx.device.side_stream()
        self.popular_samples = self.samples = self.patched_rows = 0
        split = ctx.placement.hotline_split
        self.fused = split == "fused" or (
            split == "auto" and (ctx.device.is_host or ctx.dist.active)
        )

    def batches(
        self, epoch: int, start: int = 0, prepare: Callable[[Batch], Prepared] | None = None
    ) -> Iterator[Prepared]:
        base = self.ctx.loader.epoch(epoch, start)
        return prefetched(prepare or self.prepare, base, self.lookahead)

    def prepare(self, batch: Batch) -> HotlinePrepared:
        """Worker side: rows, slots, split, plans, and the unique cold rows gathered and shipped."""
        generation = self.generation  # read before the slot map: a swap in between re-prepares
        keyed, ids, slots = self.lookups(batch)
        cold_rows = torch.unique(ids[slots < 0])  # sorted
        with self.store.lock:
            seq = self.seq
            values = self.store.gather(cold_rows)
        item = HotlinePrepared(
            batch,
            ids,
            slots,
            generation,
            lookups=keyed,
            cold_rows=cold_rows,
            values=values,
            seq=seq,
        )
        item.popular = item.all_hot()
        item.fused = self.fused
        if self.side is not None:  # staged in pinned memory, copied on the side stream
            dev = self.ctx.device
            with dev.stream(self.side):
                item.values, item.ready = dev.copy_to_device_async(dev.stage(values))
        return split_micro(item)

    def run(self, item: HotlinePrepared) -> float:
        t = self.ctx
        dev = t.device
        with t.timer.section("waiting"):
            if item.ready is not None:
                dev.wait(item.ready)  # the compute stream waits; the host does not
            self._patch(item)
        self.routed.traffic.h2d_bytes += item.values.numel() * item.values.element_size()
        if item.ready is not None:  # values came from the side stream: keep them alive here
            dev.keep_alive(item.values)
        self.routed.prefetched = (item.cold_rows, item.values)
        with t.timer.section("transfer"):
            micro = [batch_to_device(t.device, b) for b in item.micro]
        for plan in item.plans:
            self.routed.expect(plan)
        loss = train_step(t, micro, item.positions)
        self.seq += 1  # after this step's host writes: a gather reading seq sees them
        if self.written is not None:
            self.written.index_fill_(0, item.cold_rows, self.seq)
        self.routed.prefetched = None
        self.reprofile(item.ids)
        self.popular_samples += int(item.popular.sum())
        self.samples += len(item)
        return loss

    def _patch(self, item: HotlinePrepared) -> None:
        """Re-gather the prefetched rows that steps finished after the gather have changed."""
        if item.seq == self.seq or not len(item.cold_rows):
            return
        where = torch.nonzero(self.written.index_select(0, item.cold_rows) > item.seq)
        if len(where):
            where = where.squeeze(1)  # host positions, no mask on the device
            fresh = self.store.gather(item.cold_rows.index_select(0, where))
            dev = self.ctx.device
            item.values.index_copy_(0, dev.upload(where), dev.upload(fresh))
            self.patched_rows += len(where)

    def stats(self) -> dict:
        """Traffic of this rank; the popular share over every rank's samples."""
        popular, samples = self.ctx.dist.all_sum(torch.tensor([self.popular_samples, self.samples]))
        return placement_stats(
            self,
            int(popular) / max(int(samples), 1),
            patched_rows=self.patched_rows,
            lookahead=self.lookahead,
            micro_batches="fused" if self.fused else "split",
        )
