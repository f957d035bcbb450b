"""What the placement schedules (fae, hotline) share: the hot set, the device replica, the
routing of lookups, re-profiling, and the replica's rows pushed to the host at each sync."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hotrec.data.loader import jagged_ids
from hotrec.distributed.training import share_hot_updates
from hotrec.embeddings.parts import numpy_bag_keys, numpy_keys, set_row_part
from hotrec.errors import HotrecError
from hotrec.placement.hot_cold import DeviceReplica, RoutedEmbedding
from hotrec.placement.hotset import HotSet
from hotrec.placement.popularity import PopularityProfiler, parse_bytes
from hotrec.progress import console
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Schedule
from hotrec.types import Bags, Batch


def rows_to_place(ctx: StepContext) -> nn.Module:
    """The model's row part, or a one-line error for a representation without rows."""
    part = ctx.rows
    if part is None:
        raise HotrecError(
            f"--schedule {ctx.placement.schedule} places embedding rows, but the "
            f"{ctx.embedding!r} representation has none: use --schedule baseline"
        )
    return part


def obtain_hotset(ctx: StepContext) -> HotSet:
    """The configured hot set file, or a profile of the training split under the budget."""
    p, part = ctx.placement, rows_to_place(ctx)
    dim = ctx.embedding_dim
    if p.hotset:
        hotset = HotSet.load(p.hotset)
        hotset.check_compatible(part.table_rows, dim)
        return hotset
    names = _table_names(ctx, part)
    profiler = PopularityProfiler(p.sample_fraction, ctx.seed)
    bags = None
    if ctx.train.layout is not None:  # multi-hot: every id of every bag is counted
        to_keys = numpy_bag_keys(part)  # the bags of the row part's virtual tables
        bags = lambda a, b: to_keys(*jagged_ids(ctx.train, slice(a, b)))  # noqa: E731
    profiler.fit(ctx.train.sparse, part.table_rows, names, keys=numpy_keys(part), bags=bags)
    hotset = HotSet.from_profile(profiler, parse_bytes(p.hot_budget), dim)
    s = hotset.stats
    console.print(
        f"hot set: {s['hot_rows']:,} rows under {p.hot_budget}, profiled on "
        f"{s['sampled_inputs']:,} inputs ({p.sample_fraction:.0%} sample); in that sample, "
        f"which it was fitted to (an upper bound: `hotrec plan` counts on held-out inputs), "
        f"{s['lookup_share']:.1%} of lookups and {s['input_share']:.1%} of inputs are hot"
    )
    return hotset


def install_routing(ctx: StepContext, hotset: HotSet) -> RoutedEmbedding:
    """Replace the model's table embedding by one that routes lookups to a hot-row replica.

    The store module is kept, so checkpoints have the same keys under every schedule."""
    old = rows_to_place(ctx)
    replica = DeviceReplica(old.store, hotset.rows, ctx.device)
    replica.pull()
    slot_map = torch.from_numpy(hotset.slot_map())
    routed = RoutedEmbedding(
        old.store, old.offsets, replica, slot_map, ctx.device, old.keys, old.mean_tables
    )
    if ctx.dist.active:  # the replicas stay identical: every rank applies every rank's updates
        routed.share = share_hot_updates(ctx.dist, old.store, replica.rows, ctx.device)
    set_row_part(ctx.model, routed)
    return routed


def _table_names(ctx: StepContext, part: nn.Module) -> list[str]:
    """Feature names for the profiler's messages; virtual tables are numbered."""
    names = ctx.feature_names
    if len(names) == len(part.table_rows):
        return names
    return [f"table{t}" for t in range(len(part.table_rows))]


class Placed(Schedule):
    """A schedule whose hot rows live on a device replica and whose lookups are routed to it
    or to the host rows: fae and hotline build on it."""

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        self.hotset = obtain_hotset(ctx)
        self.routed = install_routing(ctx, self.hotset)
        self.reprofiler = Reprofiler(ctx.placement.reprofile_every, self.hotset.capacity)

    def lookups(self, batch: Batch) -> tuple[Bags | None, torch.Tensor, torch.Tensor]:
        """(keyed bags or None, global rows [B, K] or [L] every id of every bag, their replica
        slots: -1 where a row is on the host only)."""
        keyed = None if batch.bags is None else self.routed.key_bags(batch.bags)
        if keyed is None:
            ids = self.routed.global_ids(batch.sparse)
        else:
            ids = self.routed.bag_rows(keyed)
        return keyed, ids, self.routed.slots(ids)

    def reprofile(self, ids: torch.Tensor) -> None:
        """After a step: count its rows, and when `placement.reprofile_every` steps have
        passed, move the hot set to the window's most-accessed rows (between steps)."""
        self.reprofiler.record(ids)
        if self.reprofiler.due(self.ctx.step + 1):
            with self.ctx.timer.section("sync"):
                self.generation += int(self.reprofiler.swap(self.routed))

    def sync(self) -> None:
        with self.ctx.timer.section("sync"):
            self.routed.replica.push()

    def reload(self) -> None:
        self.routed.replica.pull()

    def traffic(self) -> tuple[int, int]:
        return self.routed.traffic.h2d_bytes, self.routed.traffic.d2h_bytes


class Reprofiler:
    """Beyond the papers: re-count popularity over the last `every` steps' lookups and move
    rows in and out of the hot set when it drifted. Swaps happen between steps with the host
    rows made current first, so they never change the math."""

    def __init__(self, every: int, capacity: int) -> None:
        self.every, self.capacity = every, capacity
        self.window: list[torch.Tensor] = []
        self.reprofiles = self.rows_moved_in = 0

    def record(self, global_ids: torch.Tensor) -> None:
        if self.every:
            self.window.append(global_ids.reshape(-1).cpu())

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0 and bool(self.window)

    def hot_rows(self) -> np.ndarray:
        """The `capacity` most-accessed rows of the window (ties: lower id), sorted."""
        rows, counts = torch.unique(torch.cat(self.window), return_counts=True)
        self.window.clear()
        order = np.lexsort((rows.numpy(), -counts.numpy()))[: self.capacity]
        return np.sort(rows.numpy()[order])

    def swap(self, routed: RoutedEmbedding) -> bool:
        """Replace the hot set by the window's (the replica's rows pushed to the host first);
        False when it did not change."""
        new_rows = self.hot_rows()
        old = routed.replica
        if np.array_equal(new_rows, old.rows.numpy()):
            return False
        old.push()
        replica = DeviceReplica(old.store, new_rows, old.device)
        replica.traffic = old.traffic
        replica.pull()
        slot_map = torch.full_like(routed.slot_map, -1)
        slot_map[torch.from_numpy(new_rows)] = torch.arange(len(new_rows))
        routed.replica, routed.slot_map = replica, slot_map
        self.reprofiles += 1
        self.rows_moved_in += int(np.setdiff1d(new_rows, old.rows.numpy()).size)
        return True

    def stats(self) -> dict:
        if not self.every:
            return {}
        return {"reprofiles": self.reprofiles, "rows_moved_in": self.rows_moved_in}


def placement_stats(schedule, hot_input_share: float, **extra) -> dict:
    """What fae and hotline report: traffic, syncs, hot share, hot rows, re-profiles."""
    t = schedule.routed.traffic
    return {
        "schedule": schedule.name,
        "h2d_bytes": t.h2d_bytes,
        "d2h_bytes": t.d2h_bytes,
        "syncs": t.syncs,
        "hot_input_share": hot_input_share,
        "hot_rows": len(schedule.hotset.rows),
        **extra,
        **schedule.reprofiler.stats(),
    }
