"""Slow and greedy clients against a real server on loopback: unfinished heads, bodies that
trickle in, and many large chunked bodies neither take the in-flight slots nor grow the
server's memory without bound; they are answered 408 (or 503) and closed, while normal
queries keep being answered within their target."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hotrec.data.format import open_dataset
from hotrec.serving.predictor import Predictor
from tests.serving.serving_helpers import make_artifact, start_server, stop_server, wait_healthy

TARGET_MS = 500  # generous: a loaded 2-core runner also runs the clients
INFLIGHT = 8
TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    artifact = make_artifact(tmp_path_factory.mktemp("art"))
    proc = start_server(artifact, "--inline", "--policy", "static:small@cpu", "--threads", 1,
                        "--target-ms", TARGET_MS, "--max-inflight", INFLIGHT,
                        "--head-timeout", TIMEOUT_S, "--body-timeout", TIMEOUT_S,
                        "--max-buffered-mb", 4)  # fmt: skip
    try:
        wait_healthy(proc.url, proc)
        yield proc.url, proc.port, proc, query(artifact)
    finally:
        stop_server(proc)


def query(artifact: Path) -> bytes:
    val = open_dataset(Predictor.load(artifact, models=False).dataset).split("val")
    return json.dumps({"dense": val.dense[:4].tolist(), "sparse": val.sparse[:4].tolist()}).encode()


def predict(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url + "/predict", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def opened(port: int, head: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(head)
    return s


def answer(s: socket.socket, seconds: float = 10.0) -> bytes:
    """What the server sent before closing the connection."""
    s.settimeout(seconds)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    s.close()
    return data


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmRSS")


def metric(url: str, name: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        lines = r.read().decode().splitlines()
    return sum(float(x.split()[-1]) for x in lines if x.startswith(name))


def test_slow_heads_and_bodies_hold_no_slots_and_are_closed(server):
    url, port, _, body = server
    post = b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    slow_bodies = [opened(port, post + b"Content-Length: 100000\r\n\r\n{") for _ in range(20)]
    slow_heads = [opened(port, b"POST /predict HTTP/1.1\r\nHost: t\r\n") for _ in range(20)]
    start = time.monotonic()
    for i in range(6):  # more slow bodies than in-flight slots are open meanwhile
        for s in slow_bodies:
            s.sendall(b" ")  # a byte now and then: the deadline is for the whole body
        for s in slow_heads:
            s.sendall(b"X-Slow: %d\r\n" % i)
        status, answered = predict(url, body)
        assert status == 200, answered
        assert answered["latency_ms"] <= TARGET_MS
        time.sleep(0.05)
    assert time.monotonic() - start < 3 * TIMEOUT_S  # the normal queries did not wait
    for s in slow_bodies + slow_heads:
        assert answer(s).startswith(b"HTTP/1.1 408"), "a slow client was not closed with 408"
    assert metric(url, 'hotrec_timeouts_total{stage="body"}') >= 20
    assert metric(url, 'hotrec_timeouts_total{stage="head"}') >= 20


def test_large_chunked_bodies_are_held_within_the_budget(server):
    url, port, proc, body = server
    head = (b"POST /predict HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")  # fmt: skip
    part = b"[" * (512 << 10)  # under the body limit
    chunk = b"%x\r\n%s\r\n" % (len(part), part)
    before = rss_bytes(proc.pid)
    held = []
    for _ in range(80):  # 40 MiB offered, never finished; the budget is 4 MiB
        s = opened(port, head)
        try:
            s.sendall(chunk)
        except OSError:  # refused and closed while sending
            pass
        held.append(s)
    status, answered = predict(url, body)  # a normal query still gets through
    assert status == 200, answered
    grown = rss_bytes(proc.pid) - before
    assert grown < 24 << 20, f"server grew by {grown >> 20} MiB"  # without the budget: 40+
    answers = [answer(s) for s in held]
    refused = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
    timed_out = sum(a.startswith(b"HTTP/1.1 408") for a in answers)
    assert refused >= 60 and refused + timed_out == 80, [a[:40] for a in answers]
    assert metric(url, 'hotrec_rejected_total{reason="bodies held"}') >= 60
