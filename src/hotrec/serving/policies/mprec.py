"""`mprec`: the most accurate path whose predicted completion meets the latency target.

For the batch at the head of the queue, paths are tried from the highest expected accuracy
(validation accuracy, then AUC) down; among equally accurate paths (one representation on
several devices) the one that finishes first wins. A path qualifies when

  * the oldest query of the batch completes within the target: start (when the path's
    device is free) + profiled execution time of the batch - the query's arrival, and
  * (look-ahead) the next batch after it can still be on time: the queries left waiting,
    plus those expected to arrive while this batch runs (`load` items/ms x its execution
    time), up to one batch limit, finish within the oldest one's target on some path once
    this batch is done; so one slow batch does not sink the ones right behind it; and
  * (headroom) the device could sustain the current load on this path: load x its time
    per item at this batch size <= `max_utilization` (each device's cheapest path is exempt;
    with several devices the whole load is counted against each, a conservative bound).
    Without it, a slow accurate path chosen batch after batch lets the queue grow until
    every query is on the edge of the target, and noise pushes them over.

When no path qualifies, the batch goes to the path that would clear the whole queue
soonest (the most throughput), not merely the one that finishes this batch first.

Under light load the most accurate path qualifies; as the load and the queue grow only
cheaper paths do. Execution times are the profile's quantile matching the target
percentile (p95 -> the profiled p95), times the device's `slowdown` (observed / profiled
time, measured by the caller while serving: a machine busier than when it was profiled
makes every path slower).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from hotrec.errors import HotrecError
from hotrec.serving.paths import ServingPath
from hotrec.serving.policies.base import Decision, Pending, batch_limit, drain_ms, head_batch
from hotrec.serving.profile import PathProfile, Profile, quantile_for


class MPRecPolicy:
    name = "mprec"

    def __init__(
        self,
        target_ms: float = 25.0,
        percentile: float = 95.0,
        paths: list[ServingPath] | None = None,
        lookahead: bool = True,
        max_utilization: float = 0.8,
    ) -> None:
        self.target_ms = target_ms
        self.percentile = percentile
        self.paths = paths  # the paths served (default: every path of the profile)
        self.lookahead = lookahead
        self.max_utilization = max_utilization  # most busy share a slower path may cause

    def fit(self, profile: Profile) -> MPRecPolicy:
        """Order the served paths by expected accuracy, most accurate first."""
        names = [p.name for p in self.paths] if self.paths is not None else list(profile.paths)
        chosen = [profile[n] for n in names]
        if not chosen:
            raise HotrecError("mprec needs at least one profiled path")
        if self.paths is not None:  # the served limits win over the profiled ones
            limits = {p.name: p for p in self.paths}
            chosen = [_with_path(pp, limits[pp.path.name]) for pp in chosen]
        self.ranked_ = sorted(chosen, key=lambda p: (-p.accuracy, -p.auc, p.path.name))
        levels: dict[tuple[float, float], list[PathProfile]] = {}
        for p in self.ranked_:  # paths of one representation on several devices: one level
            levels.setdefault((p.accuracy, p.auc), []).append(p)
        self.levels_ = list(levels.values())
        self.quantile_ = quantile_for(self.percentile)
        # Each device's cheapest path per item (at the largest batch it may run): where the
        # load goes when nothing else keeps up.
        self.cheapest_: dict[str, ServingPath] = {}
        cost: dict[str, float] = {}
        for p in self.ranked_:
            b = batch_limit(
                p.path, partial(p.latency_ms, quantile=self.quantile_), self.target_ms / 2
            )
            ms = p.latency_ms(b, self.quantile_) / b
            if ms < cost.get(p.path.device, float("inf")):
                self.cheapest_[p.path.device], cost[p.path.device] = p.path, ms
        self.by_name_ = {p.path.name: p for p in self.ranked_}
        return self

    def decide(
        self,
        queue: Sequence[Pending],
        now_ms: float,
        free_at_ms: dict[str, float],
        load: float = 0.0,
        slowdown: dict[str, float] | None = None,
    ) -> Decision:
        at = _Moment(now_ms, free_at_ms, load, slowdown or {})
        tried: list[Decision] = []
        for level in self.levels_:
            plans = [self._plan(p, queue, at) for p in level if p.path.device in free_at_ms]
            good = [
                d
                for d in plans
                if d.meets_target
                and self._sustainable(d, at)
                and self._backlog_ok(queue[d.queries :], d, at)
            ]
            if good:  # equally accurate paths: the one that finishes first
                return min(good, key=lambda d: d.finish_ms)
            tried += plans
        if not tried:
            raise HotrecError("none of the profiled paths runs on a serving device")
        # Nothing makes it: the path that clears the whole queue soonest (the most throughput).
        total = sum(q.items for q in queue)
        return min(tried, key=lambda d: self._clear_ms(self.by_name_[d.path.name], total, at))

    def earliest_finish_ms(
        self,
        items: float,
        now_ms: float,
        free_at_ms: dict[str, float],
        slowdown: dict[str, float] | None = None,
    ) -> float:
        at = _Moment(now_ms, free_at_ms, 0.0, slowdown or {})
        finishes = [
            self._clear_ms(p, items, at) for p in self.ranked_ if p.path.device in free_at_ms
        ]
        return min(finishes, default=math.nan)

    def _clear_ms(self, p: PathProfile, items: float, at: _Moment) -> float:
        """When path p would be done with `items` items, in batches within its limit."""
        exec_ms = partial(self._exec_ms, p, at=at)
        limit = batch_limit(p.path, exec_ms, self.target_ms / 2)
        return max(at.now_ms, at.free_at_ms[p.path.device]) + drain_ms(exec_ms, limit, items)

    def _sustainable(self, d: Decision, at: _Moment) -> bool:
        """Could the path's device keep up if the whole load ran this way (utilization =
        load x time per item at this batch size, at most max_utilization)? The cheapest path
        of a device always may: it is where the load goes when nothing else keeps up."""
        if d.path == self.cheapest_[d.path.device]:
            return True
        per_item = self._exec_ms(self.by_name_[d.path.name], d.items, at) / d.items
        return at.load * per_item <= self.max_utilization

    def _exec_ms(self, p: PathProfile, items: float, at: _Moment) -> float:
        """Predicted execution time: the profiled quantile x the device's observed slowdown."""
        return p.latency_ms(items, self.quantile_) * at.slowdown.get(p.path.device, 1.0)

    def _plan(self, p: PathProfile, queue: Sequence[Pending], at: _Moment) -> Decision:
        limit = batch_limit(p.path, lambda b: self._exec_ms(p, b, at), self.target_ms / 2)
        n, items = head_batch(queue, limit)
        start = max(at.now_ms, at.free_at_ms[p.path.device])
        finish = start + self._exec_ms(p, items, at)
        return Decision(p.path, n, items, finish, finish - queue[0].arrival_ms <= self.target_ms)

    def _backlog_ok(self, rest: Sequence[Pending], d: Decision, at: _Moment) -> bool:
        """Can the queries behind this batch (waiting, or arriving while it runs) still make
        their target on the fastest path after it?"""
        if not self.lookahead:
            return True
        incoming = at.load * max(d.finish_ms - at.now_ms, 0.0)  # items expected meanwhile
        if not rest and incoming < 1:
            return True
        items = sum(q.items for q in rest) + incoming
        oldest = rest[0].arrival_ms if rest else at.now_ms
        after = {**at.free_at_ms, d.path.device: d.finish_ms}
        for p in self.ranked_:
            if p.path.device in after:
                start = max(at.now_ms, after[p.path.device])
                limit = batch_limit(p.path, partial(self._exec_ms, p, at=at), self.target_ms / 2)
                finish = start + self._exec_ms(p, min(items, limit), at)
                if finish - oldest <= self.target_ms:
                    return True
        return False


@dataclass(frozen=True)
class _Moment:
    """What one decision knows about the present (see policies/base.py)."""

    now_ms: float
    free_at_ms: dict[str, float]
    load: float  # items per ms arriving
    slowdown: dict[str, float]  # device -> observed / profiled execution time


def _with_path(p: PathProfile, path: ServingPath) -> PathProfile:
    return PathProfile(path, p.accuracy, p.auc, p.batch_sizes, p.latency)
