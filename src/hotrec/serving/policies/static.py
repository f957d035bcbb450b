"""`static:<path>`: every batch on one path, whatever the load (the baselines)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from hotrec.serving.paths import ServingPath
from hotrec.serving.policies.base import Decision, Pending, batch_limit, drain_ms, head_batch
from hotrec.serving.profile import Profile, quantile_for


class StaticPolicy:
    def __init__(self, path: ServingPath, target_ms: float = 25.0, percentile: float = 95.0):
        self.path = path
        self.target_ms = target_ms
        self.percentile = percentile

    @property
    def name(self) -> str:
        return f"static:{self.path.name}"

    def fit(self, profile: Profile | None = None) -> StaticPolicy:
        """The profile only serves the predicted completion times it reports."""
        self.profile_ = profile.paths.get(self.path.name) if profile is not None else None
        self.quantile_ = quantile_for(self.percentile)
        return self

    def decide(
        self,
        queue: Sequence[Pending],
        now_ms: float,
        free_at_ms: dict[str, float],
        load: float = 0.0,
        slowdown: dict[str, float] | None = None,
    ) -> Decision:
        if self.profile_ is None:
            n, items = head_batch(queue, self.path.max_batch)
            return Decision(self.path, n, items, math.nan, True)
        exec_ms = self._exec(slowdown)
        n, items = head_batch(queue, batch_limit(self.path, exec_ms, self.target_ms / 2))
        start = max(now_ms, free_at_ms.get(self.path.device, now_ms))
        finish = start + exec_ms(items)
        return Decision(self.path, n, items, finish, finish - queue[0].arrival_ms <= self.target_ms)

    def earliest_finish_ms(
        self,
        items: float,
        now_ms: float,
        free_at_ms: dict[str, float],
        slowdown: dict[str, float] | None = None,
    ) -> float:
        if self.profile_ is None:
            return math.nan
        exec_ms = self._exec(slowdown)
        limit = batch_limit(self.path, exec_ms, self.target_ms / 2)
        start = max(now_ms, free_at_ms.get(self.path.device, now_ms))
        return start + drain_ms(exec_ms, limit, items)

    def _exec(self, slowdown: dict[str, float] | None):
        slow = (slowdown or {}).get(self.path.device, 1.0)
        return lambda b: self.profile_.latency_ms(b, self.quantile_) * slow
