"""fae: hot inputs and cold inputs as separate mini-batch streams (Adnan et al., VLDB 2022).

Every training input is classified offline (hot = all of its lookups hot). Hot batches run on
the device replica only; cold batches gather their cold rows on the host, as the baseline
does. The two streams are interleaved in runs of k hot and k' cold batches in proportion
(k = 0 means all cold, then all hot, as the authors' code does).

Beyond the paper: the authors sync the hot rows' weights and optimizer state between replica
and host at every switch of stream. Here the replica stays the one copy of the hot rows
during training: a cold batch reads its hot lookups from it and updates them there (split
routing), so a switch costs no copy and no host wait; the host rows are made current only
before evaluation, checkpoints and a re-profile. Every row gets the same updates as under
the baseline on the same sample order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from hotrec.data.loader import IndexBatches, jagged_ids
from hotrec.embeddings.parts import numpy_bag_keys, numpy_keys
from hotrec.placement.hot_cold import LookupPlan, plan_lookups
from hotrec.progress import console
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Prepared
from hotrec.training.schedules.placed import Placed, placement_stats
from hotrec.types import Batch

CLASSIFY_ROWS = 1 << 18  # rows per classification chunk


@dataclass
class FAEPrepared(Prepared):
    """A batch with the plan of its lookups: all from the replica (hot), or split."""

    plan: LookupPlan | None = None

    def select(self, keep: torch.Tensor) -> FAEPrepared:
        return plan_batch(super().select(keep))


def plan_batch(item: FAEPrepared) -> FAEPrepared:
    rows, slots = item.ids.reshape(-1), item.slots.reshape(-1)
    item.plan = LookupPlan(rows, slots) if item.trains_hot else plan_lookups(rows, slots)
    return item


def classify_inputs(
    sparse: np.ndarray,
    offsets: np.ndarray,
    slot_map: np.ndarray,
    keys: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """bool [N]: input i is hot when every one of its lookups is a hot row (chunked, vectorized).
    `keys` maps ids [n, T] to row keys [n, K] when the representation reads other rows."""
    hot = np.empty(sparse.shape[0], dtype=bool)
    for a in range(0, sparse.shape[0], CLASSIFY_ROWS):
        chunk = sparse[a : a + CLASSIFY_ROWS].astype(np.int64)  # [n, T]
        ids = (chunk if keys is None else keys(chunk)) + offsets  # [n, K] global ids
        hot[a : a + CLASSIFY_ROWS] = (slot_map[ids] >= 0).all(axis=1)
    return hot


def classify_bag_inputs(
    arrays,
    offsets: np.ndarray,
    slot_map: np.ndarray,
    keys: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """classify_inputs for a split with multi-hot tables: input i is hot when every id of
    every one of its bags is a hot row (an input without ids is hot). `keys` maps the bags
    of the T features to those of the K virtual tables (parts.numpy_bag_keys)."""
    n = len(arrays)
    hot = np.empty(n, dtype=bool)
    for a in range(0, n, CLASSIFY_ROWS):
        b = min(n, a + CLASSIFY_ROWS)
        ids, lengths = jagged_ids(arrays, slice(a, b))  # [M], [n, T]
        if keys is not None:
            ids, lengths = keys(ids, lengths)  # [M'], [n, K]
        table = np.repeat(np.tile(np.arange(lengths.shape[1]), b - a), lengths.ravel())
        cold = slot_map[ids + offsets[table]] < 0  # [M]
        owner = np.repeat(np.arange(b - a), lengths.sum(axis=1))  # the input of each id
        hot[a:b] = np.bincount(owner, weights=cold, minlength=b - a) == 0
    return hot


def interleave(n_hot: int, n_cold: int, run_length: int) -> list[tuple[bool, int]]:
    """Order of (is_hot, index) batches: runs of k hot and k' = k n_cold / n_hot cold batches,
    cold first; run_length <= 0 gives all cold, then all hot."""
    if run_length <= 0 or n_hot == 0 or n_cold == 0:
        return [(False, j) for j in range(n_cold)] + [(True, i) for i in range(n_hot)]
    k_cold = max(1, round(run_length * n_cold / n_hot))
    order, i, j = [], 0, 0
    while i < n_hot or j < n_cold:
        order += [(False, c) for c in range(j, min(j + k_cold, n_cold))]
        order += [(True, h) for h in range(i, min(i + run_length, n_hot))]
        i, j = i + run_length, j + k_cold
    return order


def stream_batches(index: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [index[a : a + batch_size] for a in range(0, len(index), batch_size)]


def _by_stream(prepare: Callable[[Batch], Prepared], streams: Iterator[bool]):
    """Several ranks: a part of a cold-stream batch may be all hot on one rank while another
    rank's part is not; every rank runs the batch the way its stream says (the row exchanges
    of a split step are collective). No re-profiling runs there, so a hot-stream part is all
    hot."""

    def prepared(batch: Batch) -> Prepared:
        item, hot = prepare(batch), next(streams)
        if item.trains_hot != hot:
            item.trains_hot = hot
            plan_batch(item)
        return item

    return prepared


class FAE(Placed):
    name = "fae"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        arrays = ctx.train
        offsets = self.routed.offsets.numpy()
        keys = numpy_keys(self.routed)
        if arrays.layout is None:
            hot = classify_inputs(arrays.sparse, offsets, self.hotset.slot_map(), keys)
        else:  # multi-hot: hot when every id of every bag is hot
            bag_keys = numpy_bag_keys(self.routed)
            hot = classify_bag_inputs(arrays, offsets, self.hotset.slot_map(), bag_keys)
        d = ctx.data
        self.hot_batches = stream_batches(np.flatnonzero(hot), d.batch_size)
        self.cold_batches = stream_batches(np.flatnonzero(~hot), d.batch_size)
        self.hot_inputs, self.inputs = int(hot.sum()), len(hot)
        self.loader = IndexBatches(arrays, d.prefetch, ctx.device.name == "cuda", ctx.loader.part)
        console.print(
            f"fae: {self.hot_inputs:,} of {self.inputs:,} training inputs are hot "
            f"({len(self.hot_batches):,} hot and {len(self.cold_batches):,} cold batches)"
        )

    def num_batches(self) -> int:
        return len(self.hot_batches) + len(self.cold_batches)

    def epoch_order(self, epoch: int) -> list[np.ndarray]:
        """Index batches of one epoch: each stream's batches permuted (seeded), then interleaved."""
        return [rows for _, rows in self.epoch_plan(epoch)]

    def epoch_plan(self, epoch: int) -> list[tuple[bool, np.ndarray]]:
        """(is a hot-stream batch, its rows) for each batch of one epoch, in order."""
        ctx = self.ctx
        hot, cold = self.hot_batches, self.cold_batches
        if ctx.data.shuffle:
            rng = np.random.default_rng([ctx.seed, epoch])
            hot = [hot[i] for i in rng.permutation(len(hot))]
            cold = [cold[i] for i in rng.permutation(len(cold))]
        order = interleave(len(hot), len(cold), ctx.placement.fae_run_length)
        return [(True, hot[i]) if is_hot else (False, cold[i]) for is_hot, i in order]

    def hot_batches_per_epoch(self) -> int:
        return len(self.hot_batches) or self.num_batches()

    def epoch_rows(self, epoch: int) -> list[np.ndarray]:
        return self.epoch_order(epoch)

    def batches(
        self, epoch: int, start: int = 0, prepare: Callable[[Batch], Prepared] | None = None
    ) -> Iterator[Prepared]:
        plan = self.epoch_plan(epoch)[start:]
        prepare = prepare or self.prepare
        if self.ctx.dist.active:  # each rank holds a part: the stream says how all parts run
            streams = iter([is_hot for is_hot, _ in plan])  # (the loader prepares in order)
            prepare = _by_stream(prepare, streams)
        return self.loader.iterate([rows for _, rows in plan], prepare)

    def prepare(self, batch: Batch) -> FAEPrepared:
        """Global rows, slots, whether every lookup is hot (the batch then runs on the replica
        only) and the plan of its lookups; streams stay as classified at start, so after a
        re-profile a batch that is no longer all-hot runs split."""
        generation = self.generation  # read before the slot map: a swap in between re-prepares
        keyed, ids, slots = self.lookups(batch)
        hot = bool((slots >= 0).all())
        item = FAEPrepared(batch, ids, slots, generation, trains_hot=hot, lookups=keyed)
        return plan_batch(item)

    def run(self, item: FAEPrepared) -> float:
        self.routed.mode = "device" if item.trains_hot else "split"
        self.routed.expect(item.plan)
        loss = self._step_on_device([item.batch])
        self.reprofile(item.ids)
        return loss

    def stats(self) -> dict:
        return placement_stats(self, self.hot_inputs / max(self.inputs, 1))
