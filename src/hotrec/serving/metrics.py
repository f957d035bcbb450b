"""Prometheus metrics of one server (its own registry, so several apps can coexist)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0,
)  # fmt: skip
BATCH_BUCKETS = tuple(float(2**i) for i in range(14))  # 1 .. 8192 items


class ServingMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: they only add noise here
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "hotrec_requests", "POST /predict requests answered, by HTTP status", ["status"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "hotrec_request_latency_seconds", "time from request arrival to answer (200 only)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.within_target = Counter(
            "hotrec_within_target", "answered requests whose latency met the target", registry=r
        )
        self.path_queries = Counter(
            "hotrec_path_queries", "queries answered per serving path", ["path"], registry=r
        )
        self.path_items = Counter(
            "hotrec_path_items", "items predicted per serving path", ["path"], registry=r
        )
        self.batch_items = Histogram(
            "hotrec_batch_items", "items per dynamic batch", ["path"], buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge("hotrec_queue_depth", "queries waiting for a batch", registry=r)
        self.slowdown = Gauge(
            "hotrec_slowdown", "observed / profiled batch time (moving average)", ["device"],
            registry=r,
        )  # fmt: skip
        self.rejected = Counter(
            "hotrec_rejected", "requests refused with 503, by reason", ["reason"], registry=r
        )

        self.timeouts = Counter(
            "hotrec_timeouts", "connections closed with 408: a request head or body too slow",
            ["stage"], registry=r,
        )  # fmt: skip

    def render(self) -> bytes:
        return generate_latest(self.registry)
