"""The HTTP adapter (FastAPI): request checks and status codes over predictor + policy +
batcher. All decisions live in the policy, all queueing in the batcher.

  POST /predict   one query -> its predictions (200); 408 when its body is not received in
                  time; 413 over --max-items items (or body bytes, counted also for chunked
                  bodies); 422 malformed JSON, wrong feature counts, ids out of range; 503 +
                  Retry-After (seconds until the queue is predicted to drain) when the queue is
                  full, the query would miss the target, its worker is restarting or request
                  bodies fill the byte budget; 500 when the model gives a non-finite prediction
                  (never a 200 with nulls). Slow heads: serving/limits.py
  GET  /healthz   liveness and queue depth
  GET  /info      paths with their accuracy, policy, target, schema, dataset
  GET  /metrics   Prometheus text
  /openapi.json   the schema of all of it

Shutdown (SIGINT/SIGTERM): uvicorn stops accepting connections and waits (up to 30 s) for
the requests in flight, whose queries the batcher keeps computing; then the lifespan's
`batcher.stop()` answers anything still queued. No accepted query goes unanswered.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from hotrec import __version__
from hotrec.serving.admission import InflightLimit
from hotrec.serving.batcher import Batcher, Overloaded
from hotrec.serving.limits import Body, BodyBudget, read_body, replay
from hotrec.serving.metrics import ServingMetrics
from hotrec.serving.policies.base import Policy
from hotrec.serving.predictor import Predictor
from hotrec.serving.profile import Profile
from hotrec.serving.schemas import ErrorResponse, Health, PredictRequest, PredictResponse
from hotrec.serving.workers import WorkerDown

BYTES_PER_VALUE = 32  # generous JSON size of one feature value, for the body-size limit
CLOSE = {"Connection": "close"}  # a refusal before the whole body was read ends the connection


def create_app(
    predictor: Predictor,
    policy: Policy,
    *,
    target_ms: float = 25.0,
    percentile: float = 95.0,
    max_items: int = 4096,
    max_queue: int = 64,
    max_inflight: int = 0,
    admission: bool = True,
    profile: Profile | None = None,
    body_timeout_s: float = 10.0,
    max_buffered_mb: float = 64.0,
) -> FastAPI:
    """max_inflight: /predict requests parsed, queued or computed at once (their bodies read)
    before more are refused with 503 (0 = max_queue): bounds the work ahead of the bounded
    queue. body_timeout_s: a body not read in full within it is answered 408.
    max_buffered_mb: request bodies held at once (being read or served) beyond it are
    refused with 503.
    admission: refuse (503) queries predicted to miss the target even on the policy's fastest
    path (needs a profile); under overload the accepted ones stay on time. profile: batch
    times are compared with it to track how much slower than profiled each device runs (the
    policy plans with that)."""
    metrics = ServingMetrics()
    batcher = Batcher(predictor, policy, max_queue, metrics, profile=profile, admission=admission)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()  # uvicorn has stopped accepting; answer anything still queued

    app = FastAPI(
        title="hotrec MP-Rec serving",
        version=__version__,
        description=f"Click-probability predictions; policy {policy.name}, target "
        f"p{percentile:g} <= {target_ms:g} ms.",
        lifespan=lifespan,
    )
    app.state.batcher, app.state.metrics = batcher, metrics
    app.state.lost = 0  # accepted queries not answered because their worker died (503)
    fields = predictor.schema.num_dense + predictor.schema.num_tables
    max_body = max_items * fields * BYTES_PER_VALUE + (64 << 10)
    inflight = max_inflight or max_queue
    app.add_middleware(
        PredictGuard, max_body=max_body, max_inflight=inflight, batcher=batcher, metrics=metrics,
        body_timeout_s=body_timeout_s, max_buffered=int(max_buffered_mb * (1 << 20)),
        late_share=1.0 - percentile / 100.0,
    )  # fmt: skip
    info = server_info(predictor, policy, target_ms, percentile, max_items, max_queue)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": first_error(exc)}, status_code=422)

    errors = {
        413: {"model": ErrorResponse, "description": "too many items or too large a body"},
        422: {"model": ErrorResponse, "description": "malformed request"},
        503: {
            "model": ErrorResponse,
            "description": "overloaded or shutting down; see Retry-After",
        },
    }

    body_schema = {"application/json": {"schema": PredictRequest.model_json_schema()}}

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors,
        openapi_extra={"requestBody": {"content": body_schema, "required": True}},
    )
    async def predict(request: Request) -> PredictResponse:
        t0 = request.scope.get("state", {}).get("t0", time.perf_counter())
        try:  # pydantic's own JSON parser: several times faster than json.loads + validate
            body = PredictRequest.model_validate_json(await request.body())
        except ValidationError as e:
            raise HTTPException(422, first_error(e)) from None
        if body.items == 0:
            raise HTTPException(422, "a query needs at least one item")
        if body.items > max_items:
            raise HTTPException(413, f"{body.items} items in one query; at most {max_items}")
        try:
            if body.raw is not None:
                dense, sparse = predictor.map_raw(body.raw)
            else:
                dense, sparse = predictor.check(body.dense, body.sparse)
        except ValueError as e:
            raise HTTPException(422, str(e)) from None
        try:
            future = batcher.submit(dense, sparse, t0 * 1e3)
        except Overloaded as e:
            metrics.rejected.labels(e.reason).inc()
            headers = {"Retry-After": str(e.retry_after_s)}
            raise HTTPException(503, f"overloaded: {e.reason}", headers=headers) from None
        try:
            answer = await future
        except WorkerDown as e:  # its worker died: not answered, and the client is told so
            metrics.rejected.labels("worker_down").inc()
            app.state.lost += 1
            headers = {"Retry-After": str(e.retry_after_s)}
            raise HTTPException(503, str(e), headers=headers) from None
        if not np.isfinite(answer.predictions).all():  # never a 200 with null predictions
            raise HTTPException(
                500, f"path {answer.path} gave a non-finite prediction; the model is damaged"
            )
        latency = time.perf_counter() - t0
        metrics.latency.observe(latency)
        if latency * 1e3 <= target_ms:
            metrics.within_target.inc()
        return PredictResponse(
            id=body.id,
            predictions=answer.predictions.tolist(),
            path=answer.path,
            items=len(answer.predictions),
            queue_ms=round(answer.queue_ms, 3),
            compute_ms=round(answer.compute_ms, 3),
            latency_ms=round(latency * 1e3, 3),
        )

    @app.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        pool = predictor.remote
        workers = pool.health() if pool is not None else {}
        status = "ok" if batcher.accepting else "draining"
        if status == "ok" and any(w["state"] != "up" for w in workers.values()):
            status = "degraded"
        return Health(status=status, queue=len(batcher.queue), policy=policy.name, workers=workers)

    @app.get("/info")
    async def get_info() -> dict:
        return info

    @app.get("/metrics")
    async def get_metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


class PredictGuard:
    """ASGI middleware for POST /predict. Before reading a body it refuses, unread, bodies
    over max_body bytes (413, by Content-Length) and requests predicted to miss the target
    (503: as many requests are in flight as the server answers within the target, an
    adaptive limit, or the batcher's queue would make it late; see serving/admission.py).
    It then reads the body in full
    within body_timeout_s (408) and the shared byte budget (503), and only then stamps the
    arrival time and counts the request in flight (503 beyond max_inflight). A slow client
    thus holds neither an in-flight slot nor more than its own bytes. Answers are counted by
    status; a client that went away is counted as "disconnected"."""

    def __init__(
        self, app, max_body: int, max_inflight: int, batcher: Batcher, metrics: ServingMetrics,
        body_timeout_s: float = 10.0, max_buffered: int = 64 << 20, late_share: float = 0.05,
    ) -> None:  # fmt: skip
        self.app, self.max_body, self.max_inflight = app, max_body, max_inflight
        self.batcher, self.metrics = batcher, metrics
        self.body_timeout_s = body_timeout_s
        self.budget = BodyBudget(max_buffered)
        # requests in flight, bounded by max_inflight and (admission) by a limit that
        # follows the answers' latency against the policy's target
        self.limit = InflightLimit(batcher.policy.target_ms / 1e3, max_inflight, late_share)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/predict":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            detail = f"request body of {int(length):,} bytes; at most {self.max_body:,}"
            return await self._refuse(413, detail, CLOSE, scope, receive, send)
        late = self._late()
        if late is not None:  # refused before its body is read: cheap under overload
            return await self._overloaded(late, "", {}, scope, receive, send)
        body = await read_body(receive, self.max_body, self.budget, self.body_timeout_s)
        try:
            await self._admit(body, scope, receive, send)
        finally:
            body.release()

    def _late(self, items: float = 1) -> str | None:
        """Why a request of `items` items arriving now would miss the target, if it would:
        the requests in flight are as many as the server answers within the target, or the
        batcher's queue is too long (admission control only; a server shutting down says
        so itself)."""
        if not (self.batcher.admission and self.batcher.accepting):
            return None
        if self.limit.full():
            return "late behind requests in flight"
        return "predicted to miss the target" if self.batcher.likely_late(items) else None

    async def _admit(self, body: Body, scope, receive, send) -> None:
        if body.refusal == "gone":
            self.metrics.requests.labels("disconnected").inc()
            return None
        if body.refusal == "timeout":
            self.metrics.timeouts.labels("body").inc()
            detail = f"request body not received within {self.body_timeout_s:g} s"
            return await self._refuse(408, detail, CLOSE, scope, receive, send)
        if body.refusal == "too_large":
            detail = f"request body over {self.max_body:,} bytes"
            return await self._refuse(413, detail, CLOSE, scope, receive, send)
        if body.refusal == "busy":
            held = f" over {self.budget.limit >> 20} MiB"
            return await self._overloaded("bodies held", held, CLOSE, scope, receive, send)
        if self.limit.inside >= self.max_inflight:
            return await self._overloaded("too many in flight", "", {}, scope, receive, send)
        late = self._late(self.batcher.typical_items())  # before parsing: the queue moved
        if late is not None:
            return await self._overloaded(late, "", {}, scope, receive, send)
        t0 = scope.setdefault("state", {})["t0"] = time.perf_counter()  # the query arrived
        self.limit.enter()
        status: dict = {"code": None, "gone": False}
        try:
            await self._forward(scope, replay(body.data, receive), send, status)
        finally:
            answered = status["code"] == 200 and not status["gone"]
            self.limit.leave(time.perf_counter() - t0 if answered else None)

    async def _overloaded(self, reason: str, more: str, headers: dict, scope, receive, send):
        self.metrics.rejected.labels(reason).inc()
        detail = f"overloaded: {reason}{more} ({self.limit.inside} requests in flight)"
        headers = {"Retry-After": str(self.batcher.retry_after_s()), **headers}
        await self._refuse(503, detail, headers, scope, receive, send)

    async def _refuse(self, code: int, detail: str, headers: dict, scope, receive, send) -> None:
        """Answer `code` with {"detail": detail} as raw ASGI messages: a refusal under
        overload must cost as little as possible."""
        self.metrics.requests.labels(str(code)).inc()
        body = json.dumps({"detail": detail}).encode()
        raw = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    async def _forward(self, scope, receive, send, status: dict) -> None:
        """Run the request; count its answer's status (`status["code"]`), or "disconnected"
        when the client went away (`status["gone"]`: an answer could not reach it, not a
        server error)."""

        async def watched():
            message = await receive()
            if message["type"] == "http.disconnect":
                status["gone"] = True
            return message

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, watched, send_status)
        except ClientDisconnect:  # raised while reading its body: nothing to answer, no error
            status["gone"] = True
        finally:
            gone, code = status["gone"], status["code"]
            self.metrics.requests.labels("disconnected" if gone else str(code or 500)).inc()


def first_error(exc: RequestValidationError | ValidationError) -> str:
    """The first validation error as one line: 'body.dense.0.2: Input should be a number'."""
    errs = exc.errors()
    if not errs:
        return "invalid request"
    e = errs[0]
    if e.get("type") == "json_invalid":
        return f"the body is not valid JSON ({(e.get('ctx') or {}).get('error', 'decode error')})"
    where = ".".join(str(x) for x in e.get("loc", ())) or "body"
    more = f" (and {len(errs) - 1} more errors)" if len(errs) > 1 else ""
    return f"{where}: {e.get('msg', 'invalid')}{more}"


def server_info(
    predictor: Predictor, policy: Policy, target_ms: float, percentile: float, max_items: int,
    max_queue: int,
) -> dict:  # fmt: skip
    paths = []
    for p in predictor.paths:
        val = predictor.metrics(p.representation)
        paths.append({"name": p.name, "representation": p.representation, "device": p.device,
                      "max_batch": p.max_batch, "accuracy": val.get("accuracy"),
                      "auc": val.get("auc")})  # fmt: skip
    schema = predictor.schema
    return {
        "policy": policy.name,
        "target_ms": target_ms,
        "percentile": percentile,
        "max_items": max_items,
        "max_queue": max_queue,
        "paths": paths,
        "dense_features": schema.num_dense,
        "tables": [{"name": t.name, "rows": t.rows} for t in schema.tables],
        "raw_fields": predictor.raw_mapper is not None,
        "mp_cache": predictor.mp_cache,  # representation -> ids whose DHE outputs are cached
        "artifact": str(predictor.source),
        "dataset": predictor.dataset,
    }
