"""Dynamic batching with a bounded queue: the runtime between the HTTP adapter and the model.

Queries wait in one FIFO queue (at most `max_queue`; more is refused with `Overloaded`,
which the server turns into 503 + Retry-After, so latency cannot grow without bound). With
admission control on, a query is also refused when the queries already waiting would make
it miss the target even on the policy's fastest path (it would be late anyway, and computing
it would make the ones behind it late too). A
dispatcher task wakes on every arrival and every finished batch; while queries wait and a
device is idle it asks the policy for a decision and, when the chosen path's device is idle,
takes that many queries from the head of the queue as one batch and runs it on the device's
own worker thread. Each query gets its slice of the batch's predictions.

Everything but the model call runs on the event loop, so no locks are needed. `stop()`
refuses new queries and returns once every accepted one is answered (graceful shutdown).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from hotrec.serving.bag_ids import BagIds, concat_ids
from hotrec.serving.metrics import ServingMetrics
from hotrec.serving.policies.base import Pending, Policy
from hotrec.serving.predictor import Predictor
from hotrec.serving.profile import Profile

DECIDE_WINDOW = 256  # queries of the queue's head shown to the policy
LOAD_WINDOW_MS = 1000.0  # arrivals older than this do not count towards the load ...
LOAD_ARRIVALS = 64  # ... nor any but the latest LOAD_ARRIVALS: the rate tracks a step quickly
LOAD_MIN_SPAN_MS = 100.0  # the load is measured over at least this span
SLOWDOWN_WEIGHT = 0.2  # weight of the newest batch in the observed slowdown (moving average)


class Overloaded(Exception):
    """The queue is full (or the server is shutting down): answer 503."""

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.reason, self.retry_after_s = reason, retry_after_s


@dataclass
class Answer:
    predictions: np.ndarray  # [items] probabilities
    path: str  # the path that computed them
    queue_ms: float  # arrival -> batch start
    compute_ms: float  # the batch's model time
    batch_items: int  # items in the whole batch


@dataclass
class Job:
    dense: np.ndarray  # [n, F_d]
    sparse: np.ndarray | BagIds  # [n, T], or a multi-hot dataset's bags
    arrival_ms: float
    future: asyncio.Future = field(repr=False)

    @property
    def items(self) -> int:
        return len(self.dense)


class Batcher:
    def __init__(
        self,
        predictor: Predictor,
        policy: Policy,
        max_queue: int = 64,
        metrics: ServingMetrics | None = None,
        clock: Callable[[], float] = time.perf_counter,
        profile: Profile | None = None,
        admission: bool = False,
    ) -> None:
        self.predictor, self.policy, self.max_queue = predictor, policy, max_queue
        self.profile = profile  # to compare observed batch times with (slowdown)
        self.admission = admission  # refuse queries predicted to miss the policy's target
        self.metrics = metrics or ServingMetrics()
        self.clock = clock
        self.devices = sorted({p.device for p in predictor.paths})
        self.queue: deque[Job] = deque()
        self.busy: dict[str, float | None] = {d: None for d in self.devices}  # predicted finish
        self.slowdown = {d: 1.0 for d in self.devices}  # observed / profiled batch time
        self.accepting = False
        self.answered = 0
        self.queued_items = 0
        self._arrivals: deque[tuple[float, int]] = deque(maxlen=LOAD_ARRIVALS)  # (ms, items)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._workers: dict[str, ThreadPoolExecutor] = {}

    def now_ms(self) -> float:
        return self.clock() * 1e3

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._workers = {
            d: ThreadPoolExecutor(1, thread_name_prefix=f"hotrec-{d}") for d in self.devices
        }
        self.accepting = True
        self._task = asyncio.create_task(self._dispatch_loop())

    def submit(
        self, dense: np.ndarray, sparse: np.ndarray, arrival_ms: float | None = None
    ) -> asyncio.Future:
        """Queue one checked query (arrived at `arrival_ms` on this clock, default now); its
        future resolves to an Answer. Raises Overloaded."""
        if not self.accepting:
            raise Overloaded("shutting down")
        if len(self.queue) >= self.max_queue:
            raise Overloaded("queue full", self.retry_after_s())
        arrival = self.now_ms() if arrival_ms is None else arrival_ms
        if not self.can_meet_target(len(dense), arrival):
            raise Overloaded("predicted to miss the target", self.retry_after_s())
        future = asyncio.get_running_loop().create_future()
        self.queue.append(Job(dense, sparse, arrival, future))
        self.queued_items += len(dense)
        self._arrivals.append((arrival, len(dense)))
        self.metrics.queue_depth.set(len(self.queue))
        self._wake.set()
        return future

    async def stop(self) -> None:
        """Refuse new queries, answer every accepted one, then stop the workers."""
        self.accepting = False
        while self.queue or self._running:
            self._wake.set()
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for w in self._workers.values():
            w.shutdown(wait=True)

    def can_meet_target(self, items: float, arrival_ms: float | None = None) -> bool:
        """Admission control: True unless the queries already waiting (and running) would
        make a query of `items` items that arrived at `arrival_ms` miss the policy's target
        on its fastest path. A query that would be late even on idle devices is admitted:
        the queue is not the reason, and refusing it would also stop the measurements that
        tell the policy the devices got faster again. Always True without admission or
        without a profile."""
        if not self.admission:
            return True
        now = self.now_ms()
        arrival = now if arrival_ms is None else arrival_ms
        budget = self.policy.target_ms
        behind = self.policy.earliest_finish_ms(
            self.queued_items + items, now, self._free_at(now), self.slowdown
        )
        if not math.isfinite(behind) or behind - arrival <= budget:
            return True
        idle = {d: now for d in self.devices}
        alone = self.policy.earliest_finish_ms(items, now, idle, self.slowdown)
        return alone - arrival > budget

    def likely_late(self, items: float = 1) -> bool:
        """Would the queue make a query of `items` items miss the target now? A check before
        a request's body is read (one item) and again before it is parsed (the typical size,
        `typical_items()`), so that an overloaded server refuses cheaply instead of parsing
        queries only to refuse them at submit, where the query's own size is checked."""
        return not self.can_meet_target(items)

    def typical_items(self) -> float:
        """The mean size of the latest arrivals (1 before any)."""
        arrivals = self._arrivals
        return sum(n for _, n in arrivals) / len(arrivals) if arrivals else 1.0

    def _free_at(self, now: float) -> dict[str, float]:
        """When each device is free (now when idle, else the running batch's prediction)."""
        return {d: now if f is None else max(f, now) for d, f in self.busy.items()}

    def load(self, now_ms: float) -> float:
        """Items per ms arriving lately: the latest arrivals (at most LOAD_ARRIVALS, none older
        than LOAD_WINDOW_MS) over the time since the first of them."""
        while self._arrivals and self._arrivals[0][0] < now_ms - LOAD_WINDOW_MS:
            self._arrivals.popleft()
        if not self._arrivals:
            return 0.0
        items = sum(n for _, n in self._arrivals)
        return items / max(now_ms - self._arrivals[0][0], LOAD_MIN_SPAN_MS)

    def retry_after_s(self) -> int:
        """Seconds after which the queue has likely drained (at least 1): the policy's
        prediction for the queued items when it has a profile, else the running batches."""
        now = self.now_ms()
        finish = self.policy.earliest_finish_ms(
            self.queued_items, now, self._free_at(now), self.slowdown
        )
        if not math.isfinite(finish):
            running = [f for f in self.busy.values() if f is not None and math.isfinite(f)]
            finish = max(running, default=now)
        return max(1, math.ceil((finish - now) / 1e3))

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                self._dispatch()
            except Exception as e:  # a broken policy fails the waiting queries, not the loop
                while self.queue:
                    job = self.queue.popleft()
                    if not job.future.done():
                        job.future.set_exception(e)
                self.queued_items = 0
                self.metrics.queue_depth.set(0)

    def _dispatch(self) -> None:
        """Start batches while queries wait and the policy's chosen device is idle."""
        while self.queue and any(f is None for f in self.busy.values()):
            if self.queue[0].future.done():  # its client went away: nothing to compute
                self.queued_items -= self.queue.popleft().items
                continue
            now = self.now_ms()
            free_at = self._free_at(now)
            head = [Pending(j.items, j.arrival_ms) for j in islice(self.queue, DECIDE_WINDOW)]
            decision = self.policy.decide(head, now, free_at, self.load(now), self.slowdown)
            device = decision.path.device
            if self.busy[device] is not None:  # the policy waits for a busy device
                return
            jobs = [self.queue.popleft() for _ in range(decision.queries)]
            self.queued_items -= sum(j.items for j in jobs)
            self.metrics.queue_depth.set(len(self.queue))
            finish = decision.finish_ms if math.isfinite(decision.finish_ms) else math.inf
            self.busy[device] = finish
            task = asyncio.create_task(self._run(decision.path, jobs, now))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, path, jobs: list[Job], start_ms: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            dense = np.concatenate([j.dense for j in jobs])  # [N, F_d]
            sparse = concat_ids([j.sparse for j in jobs])  # [N, T] (or BagIds)
            t0 = self.clock()
            probs = await loop.run_in_executor(
                self._workers[path.device], self.predictor.predict, path, dense, sparse
            )
            compute_ms = (self.clock() - t0) * 1e3
            self._observe(path, len(dense), compute_ms)
        except Exception as e:  # a failed batch fails its queries, not the server
            for j in jobs:
                if not j.future.done():
                    j.future.set_exception(e)
        else:
            self._answer(path, jobs, probs, start_ms, compute_ms)
        finally:
            self.busy[path.device] = None
            self._wake.set()

    def _observe(self, path, items: int, compute_ms: float) -> None:
        """Move the device's slowdown towards this batch's observed / profiled time."""
        known = self.profile.paths.get(path.name) if self.profile is not None else None
        if known is None:
            return
        ratio = min(max(compute_ms / max(known.latency_ms(items, "median"), 1e-3), 0.25), 20.0)
        old = self.slowdown[path.device]
        self.slowdown[path.device] = (1 - SLOWDOWN_WEIGHT) * old + SLOWDOWN_WEIGHT * ratio
        self.metrics.slowdown.labels(path.device).set(self.slowdown[path.device])

    def _answer(self, path, jobs: list[Job], probs: np.ndarray, start_ms: float, compute_ms: float):
        total = len(probs)
        self.metrics.batch_items.labels(path.name).observe(total)
        self.metrics.path_queries.labels(path.name).inc(len(jobs))
        self.metrics.path_items.labels(path.name).inc(total)
        at = 0
        for j in jobs:
            answer = Answer(
                probs[at : at + j.items], path.name, start_ms - j.arrival_ms, compute_ms, total
            )
            at += j.items
            if not j.future.done():  # the client may have gone away
                j.future.set_result(answer)
                self.answered += 1
