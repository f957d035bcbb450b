"""The HTTP server in-process (httpx over ASGI): answers, status codes, overload, shutdown."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import numpy as np
import pytest

from hotrec.data.format import open_dataset
from hotrec.serving.policies import make_policy
from hotrec.serving.predictor import Predictor
from hotrec.serving.profiler import LatencyProfiler
from hotrec.serving.server import create_app
from tests.serving.serving_helpers import make_artifact


class SlowPredictor(Predictor):
    """Every batch takes at least 40 ms: queues fill up at a handful of requests."""

    def predict(self, path, dense, sparse):
        time.sleep(0.04)
        return super().predict(path, dense, sparse)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return make_artifact(tmp_path_factory.mktemp("art"))


@pytest.fixture(scope="module")
def queries(artifact):
    """10 labelled-split queries of 1-9 items as (dense, sparse) lists."""
    predictor = Predictor.load(artifact)
    val = open_dataset(predictor.dataset).split("val")
    out, at = [], 0
    for size in range(1, 11):
        out.append((val.dense[at : at + size].tolist(), val.sparse[at : at + size].tolist()))
        at += size
    return out


@asynccontextmanager
async def client_for(app):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


def app_for(artifact, policy="mprec", predictor_cls=Predictor, **kw):
    predictor = predictor_cls.load(artifact)
    profile = None
    if policy == "mprec":
        profile = LatencyProfiler((1, 8, 64), repeats=2, warmup=1).fit(predictor).profile_
    app = create_app(predictor, make_policy(policy, predictor.paths, profile), **kw)
    return app, predictor


@pytest.mark.parametrize("policy", ["mprec", "static:small@cpu", "static:large@cpu"])
def test_predictions_equal_the_predictors(artifact, queries, policy):
    app, predictor = app_for(artifact, policy)

    async def main():
        async with client_for(app) as c:
            return [await c.post("/predict", json={"id": i, "dense": d, "sparse": s})
                    for i, (d, s) in enumerate(queries)]  # fmt: skip

    for i, r in enumerate(asyncio.run(main())):
        assert r.status_code == 200, r.text
        body = r.json()
        dense, sparse = predictor.check(*queries[i])
        want = predictor.predict(predictor.path(body["path"]), dense, sparse)
        assert body["id"] == i and body["items"] == len(want)
        np.testing.assert_allclose(body["predictions"], want, rtol=1e-6)
        if policy.startswith("static"):
            assert body["path"] == policy.removeprefix("static:")


def test_bad_requests_get_a_clear_4xx(artifact, queries):
    app, _ = app_for(artifact, max_items=8)
    dense, sparse = queries[2]  # 3 items
    cases = [
        (b"{not json", 422, "not valid JSON"),
        (json.dumps({"dense": [r[:2] for r in dense], "sparse": sparse}), 422, "dense must be"),
        (json.dumps({"dense": dense, "sparse": [r + [1] for r in sparse]}), 422, "sparse must be"),
        (json.dumps({"dense": dense, "sparse": [[999] * 4] * 3}), 422, "out of range"),
        (json.dumps({"dense": dense}), 422, "need both dense and sparse"),
        (json.dumps({"dense": dense, "sparse": sparse, "raw": [[1]]}), 422, "not both"),
        (json.dumps({"dense": [], "sparse": []}), 422, "at least one item"),
        (json.dumps({"dense": dense, "sparse": sparse, "extra": 1}), 422, "extra"),
        (json.dumps({"dense": [["a"] * 3] * 3, "sparse": sparse}), 422, "valid number"),
        (json.dumps({"dense": dense * 3, "sparse": sparse * 3}), 413, "9 items in one query"),
        (json.dumps({"dense": [[0.5] * 3] * 8000, "sparse": [[1] * 4] * 8000}), 413, "body"),
        (json.dumps({"raw": [["1"] * 7]}), 422, "Criteo-prepared datasets only"),
    ]

    async def main():
        async with client_for(app) as c:
            out = []
            for body, _, _ in cases:
                headers = {"content-type": "application/json"}
                out.append(await c.post("/predict", content=body, headers=headers))
            out.append(await c.get("/predict"))
            return out, (await c.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    for r, (_, code, message) in zip(responses, cases, strict=False):
        assert r.status_code == code, (message, r.text)
        assert message in r.json()["detail"]
        assert "\n" not in r.json()["detail"]
    assert responses[-1].status_code == 405
    assert 'hotrec_requests_total{status="422"} 10.0' in metrics
    assert 'hotrec_requests_total{status="413"} 2.0' in metrics


def test_a_chunked_body_over_the_limit_is_refused_and_a_small_one_served(artifact, queries):
    app, predictor = app_for(artifact, "static:small@cpu", max_items=8)
    dense, sparse = queries[2]
    small = json.dumps({"dense": dense, "sparse": sparse}).encode()
    huge = json.dumps({"dense": [[0.5] * 3] * 8000, "sparse": [[1] * 4] * 8000}).encode()

    def chunks(data: bytes):  # no Content-Length: httpx sends Transfer-Encoding: chunked
        async def gen():
            for i in range(0, len(data), 4096):
                yield data[i : i + 4096]

        return gen()

    async def main():
        async with client_for(app) as c:
            headers = {"content-type": "application/json"}
            return [await c.post("/predict", content=chunks(b), headers=headers)
                    for b in (huge, small, b'{"dense": [[true]], "sparse": [[true]]}')]  # fmt: skip

    too_big, ok, bools = asyncio.run(main())
    assert too_big.status_code == 413 and "request body over" in too_big.json()["detail"]
    assert ok.status_code == 200, ok.text
    want = predictor.predict(predictor.path("small@cpu"), *predictor.check(dense, sparse))
    np.testing.assert_allclose(ok.json()["predictions"], want, rtol=1e-6)
    assert bools.status_code == 422 and "sparse" in bools.json()["detail"]


def test_overload_answers_503_and_loses_no_request(artifact, queries):
    app, predictor = app_for(artifact, "static:small@cpu", SlowPredictor, max_queue=2)
    n = 16

    async def main():
        async with client_for(app) as c:
            posts = [c.post("/predict", json={"id": i, "dense": queries[i % 10][0],
                                              "sparse": queries[i % 10][1]})
                     for i in range(n)]  # fmt: skip
            responses = await asyncio.gather(*posts)
            return responses, (await c.get("/metrics")).text

    responses, metrics = asyncio.run(main())
    ok = [r for r in responses if r.status_code == 200]
    busy = [r for r in responses if r.status_code == 503]
    assert len(ok) + len(busy) == n and ok and busy
    assert all(int(r.headers["retry-after"]) >= 1 for r in busy)
    assert all("overloaded" in r.json()["detail"] for r in busy)
    ids = [r.json()["id"] for r in ok]
    assert len(set(ids)) == len(ids)  # each accepted query answered once
    for r in ok:
        i = r.json()["id"]
        dense, sparse = predictor.check(*queries[i % 10])
        want = predictor.predict(predictor.path("small@cpu"), dense, sparse)
        np.testing.assert_allclose(r.json()["predictions"], want, rtol=1e-6)
    assert app.state.batcher.answered == len(ok)
    assert f'hotrec_requests_total{{status="200"}} {len(ok)}.0' in metrics
    assert f'hotrec_requests_total{{status="503"}} {len(busy)}.0' in metrics
    assert f'hotrec_path_queries_total{{path="small@cpu"}} {len(ok)}.0' in metrics
    assert "hotrec_queue_depth 0.0" in metrics


def test_shutdown_answers_what_was_accepted(artifact, queries):
    app, _ = app_for(artifact, "static:large@cpu", SlowPredictor, max_queue=32)

    async def main():
        async with client_for(app) as c:
            batcher = app.state.batcher
            posts = [asyncio.create_task(c.post("/predict", json={"dense": d, "sparse": s}))
                     for d, s in queries[:6]]  # fmt: skip
            while len(batcher.queue) + sum(f is not None for f in batcher.busy.values()) == 0:
                await asyncio.sleep(0.002)  # wait until the first ones are accepted
            stopping = asyncio.create_task(batcher.stop())
            await asyncio.sleep(0)
            late = await c.post("/predict", json={"dense": queries[0][0], "sparse": queries[0][1]})
            health = (await c.get("/healthz")).json()
            answers = await asyncio.gather(*posts)
            await stopping
            return answers, late, health

    answers, late, health = asyncio.run(main())
    codes = [r.status_code for r in answers]
    assert codes.count(200) >= 1 and set(codes) <= {200, 503}
    accepted = [r for r in answers if r.status_code == 200]
    assert all(len(r.json()["predictions"]) == r.json()["items"] for r in accepted)
    assert late.status_code == 503 and "shutting down" in late.json()["detail"]
    assert health["status"] == "draining"


def test_health_info_metrics_and_openapi(artifact):
    app, _ = app_for(artifact)

    async def main():
        async with client_for(app) as c:
            return [await c.get(p) for p in ("/healthz", "/info", "/metrics", "/openapi.json")]

    health, info, metrics, openapi = asyncio.run(main())
    assert health.json() == {"status": "ok", "queue": 0, "policy": "mprec", "workers": {}}  # inline
    info = info.json()
    assert [p["name"] for p in info["paths"]] == ["small@cpu", "large@cpu"]
    assert info["paths"][1]["accuracy"] == 0.75 and info["dense_features"] == 3
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in ("hotrec_requests_total", "hotrec_request_latency_seconds_bucket",
                 "hotrec_queue_depth", "hotrec_rejected_total", "hotrec_path_queries_total"):  # fmt: skip
        assert f"# TYPE {name.removesuffix('_total').removesuffix('_bucket')}" in metrics.text
    spec = openapi.json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert set(body["schema"]["properties"]) == {"id", "dense", "sparse", "raw"}
    assert {"200", "413", "422", "503"} <= set(spec["paths"]["/predict"]["post"]["responses"])


def test_a_client_that_goes_away_is_counted_as_disconnected_not_as_500(artifact):
    """The body never arrives: no answer can reach the client, and it is not a server error."""
    app, _ = app_for(artifact, "static:small@cpu")
    scope = {"type": "http", "method": "POST", "path": "/predict", "raw_path": b"/predict",
             "headers": [(b"content-length", b"100"), (b"content-type", b"application/json")],
             "query_string": b"", "http_version": "1.1", "scheme": "http", "root_path": "",
             "server": ("test", 80), "client": ("client", 1)}  # fmt: skip

    async def main():
        async def receive():
            return {"type": "http.disconnect"}

        async def send(message):
            pass

        async with app.router.lifespan_context(app):
            await app(scope, receive, send)
        return app.state.metrics.render().decode()

    metrics = asyncio.run(main())
    assert 'hotrec_requests_total{status="disconnected"} 1.0' in metrics
    assert 'status="500"' not in metrics
