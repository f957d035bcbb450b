"""A worker process killed while serving: its queries are refused with 503 and Retry-After
(not a plain 500), /healthz says degraded with the worker's state, a new worker loads the
models, and answers come back equal to the models'."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from hotrec.data.format import open_dataset
from hotrec.serving.policies import make_policy
from hotrec.serving.predictor import Predictor
from hotrec.serving.server import create_app
from hotrec.serving.workers import WorkerDown, WorkerPool
from tests.serving.serving_helpers import make_artifact
from tests.serving.test_server import client_for


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("art"))


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def kill_worker(pool: WorkerPool, device: str = "cpu") -> None:
    os.kill(pool.procs[device].pid, signal.SIGKILL)
    pool.procs[device].join(timeout=10)


def test_a_killed_worker_is_replaced_and_answers_again(artifact):
    local = Predictor.load(artifact)
    front = Predictor.load(artifact, models=False)
    val = open_dataset(local.dataset).split("val")
    dense, sparse = local.check(val.dense[:8], val.sparse[:8])
    path = front.paths[0]
    pool = WorkerPool(artifact, None, ["cpu"], threads=1).start()
    try:
        pool.attach(front)
        kill_worker(pool)
        with pytest.raises(WorkerDown, match="restarting"):
            front.predict(path, dense, sparse)  # noticed by the query itself
        assert pool.health()["cpu"]["state"] == "restarting"
        wait_for(lambda: pool.health()["cpu"]["state"] == "up")
        assert pool.health()["cpu"]["restarts"] == 1 and pool.lost == 1
        np.testing.assert_array_equal(
            front.predict(path, dense, sparse), local.predict(path, dense, sparse)
        )
    finally:
        pool.close()


def test_the_server_answers_503_then_recovers(artifact):
    front = Predictor.load(artifact, models=False)
    val = open_dataset(front.dataset).split("val")
    query = {"dense": val.dense[:3].tolist(), "sparse": val.sparse[:3].tolist()}
    pool = WorkerPool(artifact, None, ["cpu"], threads=1).start()
    try:
        pool.attach(front)
        app = create_app(front, make_policy("static:small@cpu", front.paths, None))

        async def main():
            async with client_for(app) as c:
                assert (await c.post("/predict", json=query)).status_code == 200
                assert (await c.get("/healthz")).json()["status"] == "ok"
                kill_worker(pool)
                wait_for(lambda: pool.health()["cpu"]["state"] != "up", 10)  # the watchdog
                health = (await c.get("/healthz")).json()
                refused = await c.post("/predict", json=query)
                while pool.health()["cpu"]["state"] != "up":
                    await asyncio.sleep(0.1)
                return health, refused, await c.post("/predict", json=query)

        health, refused, after = asyncio.run(main())
        assert health["status"] == "degraded"
        assert health["workers"]["cpu"]["state"] == "restarting"
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "2"
        assert "restarting" in refused.json()["detail"]
        assert after.status_code == 200, after.text
        assert app.state.lost == 1
    finally:
        pool.close()
