"""`hotrec loadtest`: open-loop Poisson load with labelled queries, and what came back.

Queries are built once from a labelled dataset split: each takes `size` consecutive rows
from a random start (sizes from a distribution: DeepRecSys's lognormal(5.1, 0.2), median
about 164 items, capped at 1024; or MLPerf-style uniform 100-700), pre-encoded as JSON.
Arrivals follow a Poisson process at the offered rate, independent of answers (open loop),
and latency runs from the scheduled arrival, so a slow client or server cannot hide delay.

Per offered rate it reports p50/p95/p99 latency (answered queries), the share of sent
queries answered within the target, throughput, accuracy against the labels, the path mix,
and correct predictions per second over the queries answered within the target, two ways:
`expected_correct_per_s` (MP-Rec's metric: query size x the answering path's validation
accuracy) and `correct_per_s` (predictions that match the labels, threshold 0.5).
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import numpy as np

from hotrec.errors import HotrecError
from hotrec.progress import make_progress
from hotrec.serving.bag_ids import ids_as_rows

# Seconds an idle client connection is kept for reuse: below the server's keep-alive timeout
# (hotrec serve sets uvicorn's to 30 s; uvicorn's own default is 5 s), so the client never
# sends on a connection the server is closing.
CLIENT_KEEPALIVE_S = 3.0
JSON_HEADERS = {"Content-Type": "application/json"}


def check_url(url: str) -> None:
    """A one-line error for anything but an http://HOST[:PORT][/path] address."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise HotrecError(f"expected an http://HOST:PORT address, got {url!r}")


def open_session(timeout_s: float) -> aiohttp.ClientSession:
    """An aiohttp session for load: no connection limit, short-lived idle connections."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=CLIENT_KEEPALIVE_S)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
    )


@dataclass(frozen=True)
class QuerySizes:
    kind: str = "lognormal"  # lognormal (DeepRecSys) | uniform (MLPerf DLRM inference)
    mu: float = 5.1  # lognormal: mean of log(size)
    sigma: float = 0.2  # lognormal: std of log(size)
    cap: int = 1024  # lognormal: largest size
    low: int = 100  # uniform: smallest size
    high: int = 700  # uniform: largest size

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.kind == "lognormal":
            sizes = np.round(rng.lognormal(self.mu, self.sigma, n))
            return np.clip(sizes, 1, self.cap).astype(np.int64)
        if self.kind == "uniform":
            return rng.integers(self.low, self.high + 1, n)
        raise HotrecError(f"unknown query size distribution {self.kind!r}: lognormal or uniform")


@dataclass
class Query:
    body: bytes  # the JSON request
    labels: np.ndarray  # [size] 0/1

    @property
    def size(self) -> int:
        return len(self.labels)


def build_queries(split, sizes: QuerySizes, count: int, seed: int = 0) -> list[Query]:
    """`count` labelled queries from a dataset split (dense/sparse/label arrays)."""
    n = len(split.label)
    if n == 0:
        raise HotrecError("the split holds no rows to build queries from")
    rng = np.random.default_rng(seed)
    out = []
    for i, size in enumerate(sizes.sample(rng, count).tolist()):
        idx = (rng.integers(0, n) + np.arange(size)) % n  # consecutive rows, wrapping
        body = {
            "id": i,
            "dense": np.asarray(split.dense[idx], dtype=np.float64).tolist(),  # float32-exact
            "sparse": ids_as_rows(split, idx),
        }
        out.append(Query(json.dumps(body).encode(), np.asarray(split.label[idx]).round()))
    return out


@dataclass
class Record:
    """One sent query as the client saw it."""

    size: int
    status: int  # HTTP status; 0 = no HTTP answer (see `error`)
    latency_ms: float  # scheduled arrival -> answer (also for refusals)
    path: str = ""
    correct: int = 0  # predictions matching the labels
    late_start_ms: float = 0.0  # how late the client sent it (client overload shows here)
    server_ms: float = 0.0  # the server's own arrival -> answer time
    queue_ms: float = 0.0  # the server's arrival -> batch start
    compute_ms: float = 0.0  # the batch's model time
    error: str = ""  # why a query got no usable answer: timeout, connection, bad_answer


async def send(session: aiohttp.ClientSession, url: str, q: Query, scheduled: float) -> Record:
    """POST one query to `url`; every outcome is a Record (a miss, never a crash)."""
    loop = asyncio.get_running_loop()
    late = (loop.time() - scheduled) * 1e3
    try:
        async with session.post(url, data=q.body, headers=JSON_HEADERS) as resp:
            status, data = resp.status, await resp.read()
    except TimeoutError:
        return Record(q.size, 0, (loop.time() - scheduled) * 1e3, late_start_ms=late,
                      error="timeout")  # fmt: skip
    except (aiohttp.ClientError, OSError):  # refused, reset, closed mid-answer
        return Record(q.size, 0, (loop.time() - scheduled) * 1e3, late_start_ms=late,
                      error="connection")  # fmt: skip
    latency = (loop.time() - scheduled) * 1e3
    if status != 200:
        return Record(q.size, status, latency, late_start_ms=late)
    try:
        answer = json.loads(data)
        preds = np.asarray(answer["predictions"], dtype=np.float64) >= 0.5
        if preds.shape != q.labels.shape:
            raise ValueError("wrong number of predictions")
        correct = int((preds == (q.labels >= 0.5)).sum())
        return Record(q.size, 200, latency, answer["path"], correct, late, answer["latency_ms"],
                      answer["queue_ms"], answer["compute_ms"])  # fmt: skip
    except (ValueError, KeyError, TypeError):  # a 200 whose body is not a hotrec answer
        return Record(q.size, 0, latency, late_start_ms=late, error="bad_answer")


async def run_rate(
    url: str, queries: list[Query], rate: float, duration_s: float, seed: int = 0,
    timeout_s: float = 10.0, on_sent=None,
) -> tuple[list[Record], float]:  # fmt: skip
    """Poisson arrivals at `rate` queries/s for `duration_s`; (records, wall seconds)."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, int(rate * duration_s * 1.5) + 16)
    times = np.cumsum(gaps)
    times = times[times < duration_s]
    loop = asyncio.get_running_loop()
    check_url(url)
    async with open_session(timeout_s) as session:
        start = loop.time()
        tasks = []
        for i, t in enumerate(times.tolist()):
            delay = start + t - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            q = queries[i % len(queries)]
            tasks.append(asyncio.create_task(send(session, url, q, start + t)))
            if on_sent is not None:
                on_sent()
        records = await asyncio.gather(*tasks)
        wall = loop.time() - start
    return list(records), max(wall, duration_s)


async def closed_loop(
    url: str, queries: list[Query], concurrency: int, duration_s: float, timeout_s: float = 10.0
) -> tuple[list[Record], float]:
    """`concurrency` clients for `duration_s`, each sending its next query as soon as the
    previous one is answered (closed loop: the offered load follows the server's pace, so
    this measures what it sustains without a queue of its own making); (records, wall s)."""
    loop = asyncio.get_running_loop()
    check_url(url)
    async with open_session(timeout_s) as session:
        start = loop.time()
        end = start + duration_s

        async def client(k: int) -> list[Record]:
            out, i = [], k
            while loop.time() < end:
                out.append(await send(session, url, queries[i % len(queries)], loop.time()))
                i += concurrency
            return out

        parts = await asyncio.gather(*(client(k) for k in range(concurrency)))
        wall = loop.time() - start
    return [r for part in parts for r in part], wall


def capacity(
    url: str, queries: list[Query], target_ms: float, duration_s: float = 2.0,
    concurrencies: tuple[int, ...] = (1, 2, 4, 8),
) -> tuple[float, int]:  # fmt: skip
    """The server's capacity: the most answers within `target_ms` per second that closed-loop
    clients get at any of `concurrencies`; (queries/s, the concurrency that got it)."""
    url = url.rstrip("/") + "/predict"
    best = (0.0, 0)
    for c in concurrencies:
        records, wall = asyncio.run(closed_loop(url, queries, c, duration_s))
        within = sum(r.status == 200 and r.latency_ms <= target_ms for r in records) / wall
        best = max(best, (within, c))
    return best


async def warm_up(url: str, queries: list[Query], timeout_s: float) -> list[Record]:
    """Send `queries` one after another (first calls of a server are slow); their records."""
    loop = asyncio.get_running_loop()
    async with open_session(timeout_s) as session:
        return [await send(session, url, q, loop.time()) for q in queries]


def summarize(
    records: list[Record], wall_s: float, rate: float, target_ms: float, percentile: float,
    path_accuracy: dict[str, float],
) -> dict:  # fmt: skip
    """The numbers of one offered rate (see the module docstring)."""
    ok = [r for r in records if r.status == 200]
    within = [r for r in ok if r.latency_ms <= target_ms]
    lat = np.array([r.latency_ms for r in ok]) if ok else np.zeros(0)
    # The target percentile over every sent query, a refused or failed one counting as late.
    every = np.array([r.latency_ms if r.status == 200 else np.inf for r in records])
    tail = float(np.percentile(every, percentile, method="higher")) if len(every) else np.inf
    items = sum(r.size for r in ok)
    mix: dict[str, int] = {}
    for r in ok:
        mix[r.path] = mix.get(r.path, 0) + 1
    errors: dict[str, int] = {}
    for r in records:
        if r.status not in (200, 503):
            kind = r.error or f"http_{r.status}"
            errors[kind] = errors.get(kind, 0) + 1

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if len(lat) else float("nan")

    return {
        "offered_qps": rate,
        "sent": len(records),
        "answered": len(ok),
        "rejected": sum(r.status == 503 for r in records),
        "failed": sum(r.status not in (200, 503) for r in records),
        "failures": dict(sorted(errors.items())),  # kind -> count (http_4xx/5xx, timeout, ...)
        "wall_s": wall_s,
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        f"p{percentile:g}_all_ms": tail,
        "meets_target": bool(tail <= target_ms),
        "within_target_share": len(within) / len(records) if records else 0.0,
        "achieved_qps": len(ok) / wall_s,
        "items_per_s": items / wall_s,
        "accuracy": sum(r.correct for r in ok) / items if items else float("nan"),
        "correct_per_s": sum(r.correct for r in within) / wall_s,
        "expected_correct_per_s": sum(r.size * path_accuracy.get(r.path, 0.0) for r in within)
        / wall_s,
        "path_mix": {k: v / len(ok) for k, v in sorted(mix.items())},
        "client_late_p99_ms": _pct([r.late_start_ms for r in records], 99),
        "server_p99_ms": _pct([r.server_ms for r in ok], 99),
        "queue_p50_ms": _pct([r.queue_ms for r in ok], 50),
        "compute_p50_ms": _pct([r.compute_ms for r in ok], 50),
    }


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_sweep(
    url: str, queries: list[Query], rates: list[float], duration_s: float, target_ms: float,
    percentile: float, path_accuracy: dict[str, float], seed: int = 0, timeout_s: float = 10.0,
    pause_s: float = 1.0, label: str = "", warmup: int = 0,
) -> list[dict]:  # fmt: skip
    """`warmup` queries one by one (not counted), then one run per offered rate (with a pause
    between, so queues drain); the summaries."""
    url = url.rstrip("/") + "/predict"
    if warmup > 0:
        asyncio.run(warm_up(url, queries[:warmup], timeout_s))
    out = []
    progress = make_progress(unit="queries")
    expected = int(sum(rates) * duration_s)
    task = progress.add_task(f"load {label}".strip(), total=expected, rate="", info="")
    with progress:
        for i, rate in enumerate(rates):
            if rate <= 0:
                raise HotrecError(f"offered rates must be positive, got {rate}")
            progress.update(task, info=f"{rate:g} queries/s")
            records, wall = asyncio.run(
                run_rate(
                    url,
                    queries,
                    rate,
                    duration_s,
                    seed + i,
                    timeout_s,
                    on_sent=lambda: progress.advance(task),
                )  # fmt: skip
            )
            out.append(summarize(records, wall, rate, target_ms, percentile, path_accuracy))
            if i + 1 < len(rates):
                time.sleep(pause_s)
    return out


def fetch_info(url: str, timeout_s: float = 5.0) -> dict:
    """The server's /info (paths and their accuracy, target, dataset)."""
    check_url(url)
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/info", timeout=timeout_s) as r:
            return json.loads(r.read())
    except (OSError, ValueError) as e:
        raise HotrecError(f"cannot reach a hotrec server at {url} ({e})") from None
