"""`hotrec serve`: serve a multi-representation artifact over HTTP with a path policy."""

from __future__ import annotations

import argparse
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path

from hotrec.cli.serve_profile import add_model_options
from hotrec.errors import HotrecError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve an artifact over HTTP (MP-Rec path selection)",
        description="Serve the models of a `hotrec train --representations` artifact. Each query "
        "(POST /predict) waits in a bounded queue; dynamic batches go to the path (representation "
        "@ device) the policy picks: mprec takes the most accurate path whose predicted "
        "completion meets the latency target, static:PATH always the same one. Also GET "
        "/healthz, /info, /metrics (Prometheus) and /openapi.json. Ctrl-C / SIGTERM stop "
        "accepting and answer every accepted query first.",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT", help="artifact directory")
    p.add_argument("--policy", default="mprec", help="mprec (default) or static:REP@DEVICE")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="latency profile from `hotrec serve-profile` (mprec without one profiles briefly "
        "at start-up)",
    )
    p.add_argument("--target-ms", type=float, default=25.0, help="latency target (default 25)")
    p.add_argument(
        "--percentile", type=float, default=95.0, help="percentile the target holds for (95)"
    )
    p.add_argument(
        "--overhead-ms", type=float, default=1.0,
        help="part of the target the policy leaves for answering and the network (1)",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--devices", default="auto", help="auto (cpu, + cuda if present) or a list")
    p.add_argument("--representations", default=None, help="serve only these (comma list)")
    p.add_argument("--max-items", type=int, default=4096, help="most items per query (4096)")
    p.add_argument("--max-batch", type=int, default=4096, help="most items per batch (4096)")
    p.add_argument("--max-queue", type=int, default=64, help="queued queries before 503 (64)")
    p.add_argument(
        "--max-inflight", type=int, default=0,
        help="requests parsed/queued/computed at once (bodies read) before 503 (0 = --max-queue)",
    )  # fmt: skip
    p.add_argument(
        "--head-timeout", type=float, default=10.0, metavar="S",
        help="seconds a request head may take from its first byte before 408 and close (10)",
    )  # fmt: skip
    p.add_argument(
        "--body-timeout", type=float, default=10.0, metavar="S",
        help="seconds a /predict body may take to arrive before 408 and close (10)",
    )  # fmt: skip
    p.add_argument(
        "--max-buffered-mb", type=float, default=64.0, metavar="MB",
        help="request bodies held at once (read or served) before 503 (64 MiB)",
    )  # fmt: skip
    p.add_argument(
        "--no-admission", action="store_true",
        help="accept every query the queue has room for, even one predicted to miss the target",
    )  # fmt: skip
    add_model_options(p)
    p.add_argument(
        "--inline", action="store_true",
        help="run the models in the server process instead of one worker process per device",
    )  # fmt: skip
    p.add_argument("--log-level", default="warning", help="uvicorn log level (warning)")
    p.set_defaults(run=run)


def check_args(args: argparse.Namespace) -> None:
    if args.target_ms <= 0:
        raise HotrecError(f"--target-ms must be positive, got {args.target_ms}")
    if not 0 <= args.overhead_ms < args.target_ms:
        raise HotrecError(f"--overhead-ms must be in [0, --target-ms), got {args.overhead_ms}")
    if not 0 < args.percentile < 100:
        raise HotrecError(f"--percentile must be in (0, 100), got {args.percentile}")
    if args.max_inflight < 0:
        raise HotrecError(f"--max-inflight must be >= 0, got {args.max_inflight}")
    for name in ("head_timeout", "body_timeout", "max_buffered_mb"):
        if not getattr(args, name) > 0:
            flag = "--" + name.replace("_", "-")
            raise HotrecError(f"{flag} must be positive, got {getattr(args, name)}")
    for name in ("max_items", "max_batch", "max_queue"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise HotrecError(f"{flag} must be at least 1, got {getattr(args, name)}")
    if args.max_items > args.max_batch:
        raise HotrecError(
            f"--max-items ({args.max_items}) must not exceed --max-batch ({args.max_batch}): "
            "a query is never split across batches"
        )
    if not 0 <= args.port < 65536:
        raise HotrecError(f"--port must be in 0..65535, got {args.port}")
    if args.threads < 0:
        raise HotrecError(f"--threads must be >= 0, got {args.threads}")
    if args.mp_cache < 0:
        raise HotrecError(f"--mp-cache must be >= 0, got {args.mp_cache}")


def check_port(host: str, port: int) -> None:
    """A one-line error instead of uvicorn's traceback when the address is taken."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise HotrecError(f"cannot resolve --host {host!r} ({e})") from None
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise HotrecError(f"cannot listen on {host}:{port} ({e.strerror})") from None


def build_app(args: argparse.Namespace):
    """Predictor (models in worker processes unless --inline), profile and policy from the
    arguments -> (app, policy, paths, worker pool or None)."""
    import torch

    from hotrec.serving.paths import resolve_devices
    from hotrec.serving.predictor import Predictor
    from hotrec.serving.workers import WorkerPool

    if args.threads:
        torch.set_num_threads(args.threads)
    reps = [r.strip() for r in args.representations.split(",")] if args.representations else None
    devices = resolve_devices(args.devices)
    pool = None
    if args.inline:
        predictor = Predictor.load(
            args.artifact, reps, devices, args.max_batch, mp_cache=args.mp_cache
        )
        predictor.warm_up()
    else:
        predictor = Predictor.load(args.artifact, reps, devices, args.max_batch, models=False)
        pool = WorkerPool(
            args.artifact, reps, devices, args.max_batch, args.threads, args.mp_cache
        ).start()
        pool.attach(predictor)
    try:
        app, policy = _app(args, predictor)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    return app, policy, predictor.paths, pool


def _app(args: argparse.Namespace, predictor):
    from hotrec.cli.serve_profile import dataset_inputs, quick_profile
    from hotrec.progress import console
    from hotrec.serving.policies import make_policy
    from hotrec.serving.profile import Profile
    from hotrec.serving.server import create_app

    profile = Profile.load(args.profile) if args.profile else None
    if profile is None and args.policy == "mprec":
        console.print("no --profile: profiling the paths briefly (hotrec serve-profile saves one)")
        profile = quick_profile(predictor, dataset_inputs(predictor, None, "val"))
    budget = args.target_ms - args.overhead_ms
    policy = make_policy(args.policy, predictor.paths, profile, budget, args.percentile)
    app = create_app(
        predictor, policy, target_ms=args.target_ms, percentile=args.percentile,
        max_items=args.max_items, max_queue=args.max_queue, max_inflight=args.max_inflight,
        admission=not args.no_admission, profile=profile, body_timeout_s=args.body_timeout,
        max_buffered_mb=args.max_buffered_mb,
    )  # fmt: skip
    return app, policy


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from hotrec.progress import console
    from hotrec.serving.limits import timed_httptools

    check_args(args)
    check_port(args.host, args.port)
    app, policy, paths, pool = build_app(args)
    console.print(
        f"serving {args.artifact} on http://{args.host}:{args.port} - paths "
        f"{', '.join(p.name for p in paths)}; policy {policy.name}; target "
        f"p{args.percentile:g} <= {args.target_ms:g} ms"
    )
    for rep, n in app.state.batcher.predictor.mp_cache.items():
        console.print(f"MP-Cache: the outputs of {n:,} ids of {rep} skip its decoder")
    slow_head = app.state.metrics.timeouts.labels("head").inc
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level,
        timeout_graceful_shutdown=30, timeout_keep_alive=30, access_log=False,
        http=timed_httptools(args.head_timeout, slow_head), proxy_headers=False,
    )  # fmt: skip
    try:
        with signals_recorded() as received:
            uvicorn.Server(config).run()
    finally:
        if pool is not None:
            pool.close()
    how = f" ({', '.join(signal.Signals(s).name for s in received)})" if received else ""
    lost = app.state.lost
    if lost:
        console.print(
            f"server stopped{how}: {lost:,} accepted queries were answered 503 while their "
            "worker restarted; every other accepted query was answered"
        )
    else:
        console.print(f"server stopped{how}: every accepted query was answered")
    return 0


@contextmanager
def signals_recorded():
    """uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal into the
    handler that was there before it: record it there, so that a requested stop ends the
    command normally instead of killing it."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda num, frame: received.append(num)) for s in wanted}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
