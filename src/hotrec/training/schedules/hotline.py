"""hotline: popular / non-popular micro-batches with a look-ahead gather (Adnan et al., ISCA 2024).

Every mini-batch is split by "all lookups hot" into a popular and a non-popular micro-batch.
A worker thread runs `lookahead` batches ahead: it deduplicates the cold rows of each upcoming
batch and gathers them from host memory (into pinned memory, copied to the GPU on a side
stream when there is one) while the device computes. Both micro-batches form one optimizer
step with the mean loss of the whole mini-batch, so the math equals the baseline's.

Read-after-write hazard: a prefetched batch may hold cold rows that a later-finished step
updated on host. Every step logs the cold rows it updated under a sequence number; before a
prefetched batch runs, the rows updated after its gather are gathered again (patched).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from hotrec.data.loader import prefetched
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Schedule
from hotrec.training.schedules.placed import (
    Reprofiler,
    install_routing,
    obtain_hotset,
    placement_stats,
)
from hotrec.training.steps import select, train_step
from hotrec.types import Batch


@dataclass
class Prepared:
    """A batch with its cold rows already gathered."""

    batch: Batch  # on host
    popular: torch.Tensor  # bool [B]: all lookups hot
    cold_rows: torch.Tensor  # int64 [U] sorted unique global ids of its cold lookups
    values: torch.Tensor  # [U, D] on the device
    seq: int  # host updates applied when the values were read
    generation: int  # hot set the split was made with (changes at a re-profile)
    ready: torch.cuda.Event | None = None  # the side-stream copy, on CUDA

    def __len__(self) -> int:
        return len(self.batch)


class Hotline(Schedule):
    name = "hotline"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        self.hotset = obtain_hotset(ctx)
        self.routed = install_routing(ctx, self.hotset)
        self.routed.on_cold_update = self._log_cold_update
        self.lookahead = max(1, ctx.placement.lookahead)
        self.lock = threading.Lock()  # host rows: worker gathers vs main-thread updates
        self.routed.host_lock = self.lock
        self.seq = 0
        self.log: deque[tuple[int, torch.Tensor]] = deque(maxlen=self.lookahead + 8)
        self._updated: list[torch.Tensor] = []
        self.side = torch.cuda.Stream(ctx.device) if ctx.device.type == "cuda" else None
        self.popular_samples = self.samples = self.patched_rows = self.regathered = 0
        self.reprofiler = Reprofiler(ctx.placement.reprofile_every, self.hotset.capacity)
        self.generation = 0

    def batches(self, epoch: int, start: int = 0) -> Iterator[Prepared]:
        base = self.ctx.loader.epoch(epoch, start)
        return prefetched(self.prepare, base, self.lookahead)

    def prepare(self, batch: Batch) -> Prepared:
        """Worker side: split mask, unique cold rows, their values gathered and shipped."""
        generation = self.generation  # read before the slot map: a swap in between re-prepares
        ids = self.routed.global_ids(batch.sparse)  # [B, K] global ids
        hot = self.routed.slot_map[ids] >= 0  # [B, T]
        cold_rows = torch.unique(ids[~hot])  # sorted
        with self.lock:
            seq = self.seq
            values = self.routed.store.gather(cold_rows)
        prepared = Prepared(batch, hot.all(dim=1), cold_rows, values, seq, generation)
        if self.side is not None:
            with torch.cuda.stream(self.side):
                prepared.values = values.pin_memory().to(self.ctx.device, non_blocking=True)
                prepared.ready = torch.cuda.Event()
                prepared.ready.record(self.side)
        return prepared

    def run(self, item: Batch | Prepared) -> float:
        t = self.ctx
        if isinstance(item, Batch):  # called without the pipeline: gather now
            item = self.prepare(item)
        elif item.generation != self.generation:  # split made with an older hot set
            item = self.prepare(item.batch)
        with t.timer.section("waiting"):
            if item.ready is not None:
                torch.cuda.current_stream().wait_event(item.ready)
            self._patch(item)
        self.routed.traffic.h2d_bytes += item.values.numel() * item.values.element_size()
        if item.ready is not None:  # values came from the side stream: keep them alive here
            item.values.record_stream(torch.cuda.current_stream())
        self.routed.prefetched = (item.cold_rows, item.values)
        popular = item.popular
        micro = [select(item.batch, popular), select(item.batch, ~popular)]
        micro = [b for b in micro if len(b) > 0]
        with t.timer.section("transfer"):
            micro = [b.to(t.device, non_blocking=True) for b in micro]
        self._updated.clear()
        loss = train_step(t, micro)
        self.seq += 1  # after this step's host writes: a gather reading seq sees them
        if self._updated:
            self.log.append((self.seq, torch.unique(torch.cat(self._updated))))
        self.routed.prefetched = None
        self.reprofiler.record(self.routed.global_ids(item.batch.sparse))
        if self.reprofiler.due(t.step + 1):
            with t.timer.section("sync"):
                self.generation += int(self.reprofiler.swap(self.routed))
        self.popular_samples += int(popular.sum())
        self.samples += len(item)
        return loss

    def _log_cold_update(self, rows: torch.Tensor) -> None:
        self._updated.append(rows.cpu())

    def _patch(self, item: Prepared) -> None:
        """Re-gather the prefetched rows that steps finished after the gather have changed."""
        newer = [rows for s, rows in self.log if s > item.seq]
        if not newer:
            return
        missing = self.log[0][0] > item.seq + 1  # log too short to know: take everything again
        stale = (
            torch.ones_like(item.cold_rows, dtype=torch.bool)
            if missing
            else torch.isin(item.cold_rows, torch.cat(newer))
        )
        if stale.any():
            fresh = self.routed.store.gather(item.cold_rows[stale])
            item.values[stale.to(item.values.device)] = fresh.to(item.values.device)
            self.patched_rows += int(stale.sum())
            self.regathered += int(missing)

    def sync(self) -> None:
        with self.ctx.timer.section("sync"):
            self.routed.replica.push()

    def reload(self) -> None:
        self.routed.replica.pull()

    def traffic(self) -> tuple[int, int]:
        return self.routed.traffic.h2d_bytes, self.routed.traffic.d2h_bytes

    def stats(self) -> dict:
        return placement_stats(
            self,
            self.popular_samples / max(self.samples, 1),
            patched_rows=self.patched_rows,
            lookahead=self.lookahead,
        )
