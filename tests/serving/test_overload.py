"""Overload: offered 5x what the server answers within its target, a real server on loopback
keeps answering at least 70% of that capacity within the target (admission refuses the
rest early with 503); the same server without admission (negative control) answers almost
nothing in time, every query waiting behind the ones accepted before it.

On a loaded 2-core machine one 3-second window of about 100 answers varies a lot (goodput
0.64 to 0.94 of capacity in three runs beside a busy-looping process), and so does capacity
measured a minute earlier: the admission test takes up to three attempts, each measuring
capacity afresh just before offering 5x of it, and passes on the first that holds."""

from __future__ import annotations

import asyncio

import pytest

from hotrec.config import ModelConfig
from hotrec.data.format import open_dataset
from hotrec.serving.loadgen import QuerySizes, build_queries, capacity, run_rate
from tests.serving.serving_helpers import make_artifact, start_server, stop_server, wait_healthy

TARGET_MS = 250.0  # generous for a loaded 2-core runner; the model makes the capacity small
# a wide top MLP: about 20 ms of compute per 64-item query on one thread, so capacity is set
# by the model (about 50 queries/s here), not by HTTP or by this test's own client (with
# a quarter of that compute, capacity was 210 q/s and at 5x of it the client, sharing the 2
# cores, measured 0.65 once)
SLOW = ModelConfig(embedding_dim=8, bottom_mlp=(64, 8), top_mlp=(4096, 4096, 1))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("art")
    artifact = make_artifact(root, {"slow": (SLOW, 0.7)})
    val = open_dataset(root / "toy").split("val")
    queries = build_queries(val, QuerySizes("uniform", low=64, high=64), 50)
    servers = {}
    try:
        for name, extra in (("admission", []), ("none", ["--no-admission"])):
            servers[name] = start_server(artifact, "--policy", "static:slow@cpu", "--threads", 1,
                                         "--target-ms", TARGET_MS, "--overhead-ms", 0, *extra)  # fmt: skip
        for proc in servers.values():
            wait_healthy(proc.url, proc, 120)
        # capacity: measured without admission, before any overload (closed-loop clients)
        cap, _ = capacity(servers["none"].url, queries, TARGET_MS, 1.5, (2, 4, 8, 16))
        yield servers, queries, cap
    finally:
        for proc in servers.values():
            stop_server(proc)


def within_target_per_s(url: str, queries, rate: float) -> tuple[float, dict]:
    records, wall = asyncio.run(run_rate(url + "/predict", queries, rate, 3.0, seed=1))
    within = sum(r.status == 200 and r.latency_ms <= TARGET_MS for r in records)
    by_status: dict = {}
    for r in records:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    return within / wall, by_status


def test_five_times_capacity_keeps_goodput_near_capacity(setup):
    servers, queries, cap = setup
    tries = []
    for attempt in range(3):
        if attempt:  # measured again, next to the overload it is compared with
            cap, _ = capacity(servers["none"].url, queries, TARGET_MS, 1.5, (2, 4, 8, 16))
        assert cap > 5  # queries/s within the target: the model, not the machine, sets it
        goodput, by_status = within_target_per_s(servers["admission"].url, queries, 5 * cap)
        assert by_status.get(503, 0) > 0 and set(by_status) <= {200, 503}
        tries.append(f"{goodput:.1f} q/s within the target, capacity {cap:.1f}")
        if goodput >= 0.7 * cap:
            return
    pytest.fail("; ".join(tries))


def test_negative_control_without_admission_goodput_collapses(setup):
    servers, queries, cap = setup
    goodput, _ = within_target_per_s(servers["none"].url, queries, 5 * cap)
    assert goodput < 0.5 * cap, f"{goodput:.1f} q/s within the target, capacity {cap:.1f}"
