"""What a policy sees and what it decides. Policies are pure: no clock, no threads.

The dispatcher calls `decide(queue, now_ms, free_at_ms, load)` whenever queries wait and a
device is idle: `queue` is the waiting queries oldest first, `now_ms` the current time,
`free_at_ms[device]` when each serving device finishes its current batch (<= now when idle),
all on one clock the caller owns (tests pass a fake one), `load` the recent arrival rate
in items per ms and `slowdown[device]` how much slower than profiled batches have recently
run there (both measured by the caller; 0 / 1 = unknown). The decision names the path and
how many queries from the head of the queue form the batch; when its device is still busy
the dispatcher waits and asks again. With a profile, a batch holds at most the items the
path runs within half the target (`batch_limit`), so that a query waiting for one batch and
then running in the next can still make it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hotrec.serving.paths import ServingPath


@dataclass(frozen=True)
class Pending:
    """A waiting query: its number of items and when it arrived (ms)."""

    items: int
    arrival_ms: float


@dataclass(frozen=True)
class Decision:
    path: ServingPath  # where the batch runs
    queries: int  # queries taken from the head of the queue
    items: int  # items in those queries
    finish_ms: float  # predicted completion time (clock time); nan without a profile
    meets_target: bool  # predicted completion of the oldest query within the target


class Policy(Protocol):
    name: str
    target_ms: float

    def decide(
        self,
        queue: Sequence[Pending],
        now_ms: float,
        free_at_ms: dict[str, float],
        load: float = 0.0,
        slowdown: dict[str, float] | None = None,
    ) -> Decision: ...

    def earliest_finish_ms(
        self,
        items: float,
        now_ms: float,
        free_at_ms: dict[str, float],
        slowdown: dict[str, float] | None = None,
    ) -> float:
        """When `items` items (the queue plus a newcomer) would be done at the soonest on the
        policy's paths; nan without a profile. The server's admission control asks it."""
        ...


def batch_limit(path: ServingPath, exec_ms, budget_ms: float) -> int:
    """The most items (<= path.max_batch) whose predicted execution `exec_ms(items)` fits
    in budget_ms, at least 1: a batch bigger than that makes every query in it late."""
    if exec_ms(path.max_batch) <= budget_ms:
        return path.max_batch
    lo, hi = 1, path.max_batch  # exec_ms(hi) > budget; find the largest fitting size
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if exec_ms(mid) <= budget_ms else (lo, mid)
    return lo


def drain_ms(exec_ms, limit: int, items: float) -> float:
    """Time to run `items` items in batches of at most `limit` items."""
    full, rest = divmod(items, limit)
    return full * exec_ms(limit) + (exec_ms(rest) if rest > 0 else 0.0)


def head_batch(queue: Sequence[Pending], max_items: int) -> tuple[int, int]:
    """(queries, items) of the longest head of the queue within max_items (at least one)."""
    n, items = 0, 0
    for q in queue:
        if n and items + q.items > max_items:
            break
        n, items = n + 1, items + q.items
    return n, items
