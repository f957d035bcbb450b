"""The batcher alone: dynamic batches, admission limits, observed slowdown."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from hotrec.serving.batcher import Batcher, Overloaded
from hotrec.serving.policies import StaticPolicy
from hotrec.serving.predictor import Predictor
from hotrec.serving.profile import PathProfile, Profile
from tests.serving.serving_helpers import make_artifact


class Clock:
    """A fake clock (seconds) the test moves by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    return Predictor.load(make_artifact(tmp_path_factory.mktemp("art")))


def inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sparse = np.stack([rng.integers(0, r, n) for r in (50, 20, 200, 7)], axis=1)
    return rng.random((n, 3)).astype(np.float32), sparse.astype(np.int64)


def flat_profile(path, ms: float) -> Profile:
    sizes = [1, 4096]
    return Profile({path.name: PathProfile(path, 0.7, 0.75, sizes, {q: [ms, ms] for q in
                                                                   ("median", "p95", "p99")})})  # fmt: skip


def test_waiting_queries_form_one_batch_and_get_their_own_answers(predictor):
    path = predictor.path("large@cpu")
    batcher = Batcher(predictor, StaticPolicy(path).fit(None), max_queue=8)
    queries = [inputs(n, seed=n) for n in (3, 1, 5)]

    async def main():
        await batcher.start()
        futures = [batcher.submit(d, s) for d, s in queries]  # queued before any dispatch
        answers = await asyncio.gather(*futures)
        await batcher.stop()
        return answers

    answers = asyncio.run(main())
    # all three were queued before the dispatcher ran: one batch of 9 items
    assert [len(a.predictions) for a in answers] == [3, 1, 5]
    assert all(a.batch_items == 9 for a in answers)
    for (d, s), a in zip(queries, answers, strict=True):
        np.testing.assert_allclose(a.predictions, predictor.predict(path, d, s), rtol=1e-6)
        assert a.path == "large@cpu"


def test_admission_refuses_a_full_queue_and_queries_that_would_be_late(predictor):
    clock = Clock()
    path = predictor.path("small@cpu")
    policy = StaticPolicy(path, target_ms=25.0).fit(flat_profile(path, 10.0))  # 10 ms a batch
    batcher = Batcher(predictor, policy, max_queue=3, clock=clock, admission=True)

    async def main():
        await batcher.start()
        now = batcher.now_ms()
        batcher.busy["cpu"] = now + 5.0  # busy 5 ms more: a query would be done in 15 ms
        for _ in range(3):
            batcher.submit(*inputs(2))
        with pytest.raises(Overloaded, match="queue full"):
            batcher.submit(*inputs(2))
        batcher.queue.pop()
        batcher.queued_items -= 2
        batcher.busy["cpu"] = now + 20.0  # 20 ms more: 30 ms > 25 even on the only path
        assert batcher.likely_late()
        with pytest.raises(Overloaded, match="predicted to miss the target"):
            batcher.submit(*inputs(2))
        batcher.busy["cpu"] = None
        batcher._wake.set()
        await batcher.stop()
        return batcher.answered

    assert asyncio.run(main()) == 2
    assert batcher.queued_items == 0


def test_slowdown_follows_observed_batch_times(predictor):
    path = predictor.path("small@cpu")
    # profiled at 1000 ms a batch: every real batch is far faster -> slowdown falls to 0.25
    batcher = Batcher(predictor, StaticPolicy(path).fit(None), profile=flat_profile(path, 1e3))

    async def main():
        await batcher.start()
        for _ in range(30):
            await batcher.submit(*inputs(4))
        await batcher.stop()

    asyncio.run(main())
    assert batcher.slowdown["cpu"] == pytest.approx(0.25, abs=0.05)
    assert "hotrec_slowdown" in batcher.metrics.render().decode()


def test_a_failing_policy_fails_the_queries_not_the_server(predictor):
    class Broken:
        name = "broken"

        def decide(self, *args):
            raise RuntimeError("no decision")

    batcher = Batcher(predictor, Broken())

    async def main():
        await batcher.start()
        future = batcher.submit(*inputs(2))
        with pytest.raises(RuntimeError, match="no decision"):
            await future
        assert not batcher._task.done()  # the dispatcher still runs
        await batcher.stop()

    asyncio.run(main())


def test_a_query_late_even_alone_is_admitted(predictor):
    path = predictor.path("small@cpu")
    policy = StaticPolicy(path, target_ms=25.0).fit(flat_profile(path, 40.0))  # 40 ms a batch
    batcher = Batcher(predictor, policy, max_queue=4, admission=True)

    async def main():
        await batcher.start()
        batcher.busy["cpu"] = batcher.now_ms() + 40.0  # a (pretend) batch runs 40 ms more
        assert batcher.can_meet_target(2)  # 80 ms behind it, but 40 ms even alone: admitted
        future = batcher.submit(*inputs(2))
        batcher.busy["cpu"] = None
        batcher._wake.set()
        await future
        await batcher.stop()

    asyncio.run(main())


def test_load_is_the_recent_arrival_rate(predictor):
    clock = Clock()
    batcher = Batcher(predictor, StaticPolicy(predictor.paths[0]).fit(None), 200, clock=clock)

    async def main():
        await batcher.start()
        batcher.busy["cpu"] = float("inf")  # nothing leaves the queue
        for _ in range(10):  # 10 items every 10 ms
            batcher.submit(*inputs(10))
            clock.t += 0.010
        first = batcher.load(batcher.now_ms())
        for _ in range(100):  # then 10 items every 2 ms: only the latest 64 arrivals count
            batcher.submit(*inputs(10))
            clock.t += 0.002
        second = batcher.load(batcher.now_ms())
        clock.t += 2.0
        idle = batcher.load(batcher.now_ms())
        batcher.queue.clear()
        batcher.busy["cpu"] = None
        await batcher.stop()
        return first, second, idle

    first, second, idle = asyncio.run(main())
    assert first == pytest.approx(1.0)  # 100 items over 100 ms
    assert second == pytest.approx(5.0)  # 640 items over the 128 ms since the 64th-last
    assert idle == 0.0


def test_the_cheap_check_judges_a_one_item_query(predictor):
    clock = Clock()
    path = predictor.path("small@cpu")
    sizes, ms = [1, 4096], [1.0, 400.0]  # 400 ms for a big batch, 1 ms for one item
    profile = Profile({path.name: PathProfile(path, 0.7, 0.75, sizes, {q: ms for q in
                                                                      ("median", "p95", "p99")})})  # fmt: skip
    policy = StaticPolicy(path, target_ms=25.0).fit(profile)
    batcher = Batcher(predictor, policy, max_queue=8, clock=clock, admission=True)

    async def main():
        await batcher.start()
        big = await batcher.submit(*inputs(3000))  # late even alone (293 ms): admitted
        assert not batcher.likely_late()  # a big query came before; a small one is on time
        batcher.busy["cpu"] = batcher.now_ms() + 300.0  # but not behind a 300 ms batch
        assert batcher.likely_late()
        with pytest.raises(Overloaded, match="predicted to miss the target") as refused:
            batcher.submit(*inputs(20))
        assert refused.value.retry_after_s == 1  # 300 ms to wait: 1 s is the least
        batcher.busy["cpu"] = batcher.now_ms() + 2500.0
        with pytest.raises(Overloaded) as refused:
            batcher.submit(*inputs(20))
        assert refused.value.retry_after_s == 3  # 2.5 s to wait
        batcher.busy["cpu"] = None
        small = await batcher.submit(*inputs(2))
        await batcher.stop()
        return big, small

    big, small = asyncio.run(main())
    assert len(big.predictions) == 3000 and len(small.predictions) == 2
