"""MP-Rec serving: mprec against every static path, from light load to overload.

One `hotrec serve` process per policy (all started at once; the idle ones cost nothing), one
latency profile shared by all (`hotrec serve-profile`), and this process as the load
generator: for each offered rate, each policy in turn (the order rotates per rate, so slow
drifts of the shared machine hit every policy alike) gets Poisson arrivals of labelled test
queries (lognormal sizes, DeepRecSys) for --duration seconds. Reports, per rate and policy,
p50/p95/p99 latency, the share within the target and correct predictions/s within the
target, and the ratio of mprec to the best static path at that rate and to the static path
of the most accurate representation.

The artifact: --artifact, or one trained here (`hotrec train --representations
table,dhe,hybrid` on a synthetic criteo-kaggle-profile dataset, DHE with --dhe-hashes hashes
to keep training short). Offered rates: --rates, or a geometric sweep from 0.3x the most
accurate path's capacity to 1.3x what the server sustains on its fastest path (measured
here with sequential queries), so the range spans light load to overload on any machine.
The server and this load generator share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from common import RESULTS, command_line, machine, save
from hotrec.config import load_config
from hotrec.data.format import open_dataset
from hotrec.serving.loadgen import (
    QuerySizes,
    build_queries,
    open_session,
    run_rate,
    send,
    summarize,
)
from hotrec.serving.profile import Profile

HOTREC = [sys.executable, "-m", "hotrec.cli.main"]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, default=None, help="artifact to serve")
    p.add_argument("--data", type=Path, default=None, help="its labelled dataset (default: "
                   "the one recorded in the artifact)")  # fmt: skip
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows (no --artifact)")
    p.add_argument("--max-table-rows", type=int, default=20_000, help="synthetic table cap")
    p.add_argument("--dhe-hashes", type=int, default=128, help="DHE k when training here")
    p.add_argument("--rates", default=None, help="offered queries/s, comma list (default auto)")
    p.add_argument("--points", type=int, default=7, help="rates in the automatic sweep")
    p.add_argument("--duration", type=float, default=8.0, help="seconds per (rate, policy)")
    p.add_argument("--target-ms", type=float, default=25.0)
    p.add_argument("--percentile", type=float, default=99.0, help="target percentile (p99)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    p.add_argument("--max-queue", type=int, default=32, help="server queue bound")
    p.add_argument("--overhead-ms", type=float, default=5.0,
                   help="part of the target each server leaves for what it cannot see: HTTP "
                   "and the load generator's own delays on these shared cores (measured here: "
                   "client p99 - server p99 = 4-5 ms)")  # fmt: skip
    p.add_argument("--devices", default="auto", help="serving devices (auto: cpu [+ cuda])")
    p.add_argument("--queries", type=int, default=300, help="distinct labelled queries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="result name suffix (cpu / cuda)")
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/work/serving"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default=None, help="result file name (default serving_<device>)")
    return p.parse_args()


def build_artifact(args: argparse.Namespace) -> Path:
    """Train table, dhe and hybrid on a synthetic dataset once; reuse it afterwards."""
    from hotrec.data.synthetic import synthesize
    from hotrec.training.multi import train_representations

    data = args.workdir / f"kaggle-{args.rows}-cap{args.max_table_rows}"
    if not (data / "meta.json").exists():
        synthesize(data, profile="criteo-kaggle", rows=args.rows,
                   max_table_rows=args.max_table_rows, seed=args.seed)  # fmt: skip
    run_dir = args.workdir / f"reps-{args.rows}-k{args.dhe_hashes}"
    if (run_dir / "artifact" / "manifest.json").exists():
        return run_dir / "artifact"
    overrides = [f"data.path={str(data)!r}", f"model.dhe_hashes={args.dhe_hashes}",
                 "train.checkpoint_every=0", f"train.threads={args.threads}"]  # fmt: skip
    cfg = load_config(None, overrides)
    out = train_representations(cfg, ["table", "dhe", "hybrid"], run_dir, overwrite=True)
    return Path(out["artifact"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_process(artifact: Path, log: Path, *options) -> tuple[subprocess.Popen, str]:
    """`hotrec serve ARTIFACT --port P *options` as a process writing to `log`; (it, its URL)."""
    port = free_port()
    cmd = HOTREC + ["serve", str(artifact), "--port", str(port), *map(str, options)]
    env = {**os.environ, "HOTREC_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}"


def start_server(args, artifact: Path, profile: Path, policy: str) -> tuple[subprocess.Popen, str]:
    log = args.workdir / f"server-{policy.replace(':', '_')}.log"
    return serve_process(artifact, log, "--policy", policy, "--profile", profile,
                         "--threads", args.threads, "--devices", args.devices,
                         "--target-ms", args.target_ms, "--percentile", args.percentile,
                         "--max-queue", args.max_queue, "--overhead-ms", args.overhead_ms)  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 120.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}; see its log")
        try:
            with urllib.request.urlopen(url + "/info", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server {url} did not start")


def sequential_capacity(url: str, queries, n: int = 40) -> float:
    """Queries/s one server sustains when each query waits for the previous (no queueing):
    the HTTP, parsing and model cost of its fastest path together."""

    async def one_by_one() -> list[float]:
        loop, lat = asyncio.get_running_loop(), []
        async with open_session(10.0) as session:
            for i, q in enumerate(queries[: n + 5]):
                r = await send(session, url + "/predict", q, loop.time())
                if i >= 5 and r.status == 200:  # the first few warm up
                    lat.append(r.latency_ms)
        return lat

    return 1e3 / float(np.median(asyncio.run(one_by_one())))


def auto_rates(args, profile: Profile, fast_qps: float, mean_items: float) -> list[float]:
    accurate = max(profile.paths.values(), key=lambda p: (p.accuracy, p.auc))
    accurate_qps = 1e3 / accurate.latency_ms(round(mean_items), "median")
    low, high = 0.3 * accurate_qps, 1.3 * fast_qps
    return [round(float(r), 1) for r in np.geomspace(low, max(high, 2 * low), args.points)]


METRIC = "expected_correct_per_s"  # the issue's: answered-within-target items x path accuracy


def compare(rows: dict[str, list[dict]], accurate: str) -> list[dict]:
    """Per rate: mprec vs the best static path there and vs the most accurate path's, on the
    issue's correct predictions/s (METRIC); the label-counted figure alongside."""
    out = []
    for i, m in enumerate(rows["mprec"]):
        statics = {k: v[i][METRIC] for k, v in rows.items() if k != "mprec"}
        labelled = {k: v[i]["correct_per_s"] for k, v in rows.items() if k != "mprec"}
        best = max(statics, key=statics.get)
        out.append({
            "offered_qps": m["offered_qps"],
            "mprec_correct_per_s": m[METRIC],
            "best_static": best,
            "best_static_correct_per_s": statics[best],
            "vs_best_static": m[METRIC] / statics[best] if statics[best] else None,
            "vs_accurate_static": m[METRIC] / statics[accurate] if statics[accurate] else None,
            "label_counted_vs_best_static": m["correct_per_s"] / max(labelled.values())
            if max(labelled.values()) else None,
            "mprec_path_mix": m["path_mix"],
        })  # fmt: skip
    return out


def plot(result: dict, path: Path) -> None:
    from hotrec.serving.loadplot import plot_sweeps

    title = (f"{result['setup']['artifact_name']}: target p{result['setup']['percentile']:g} "
             f"<= {result['setup']['target_ms']:g} ms, CPU ({result['machine']['cores']} cores "
             "shared by servers and load generator)")  # fmt: skip
    plot_sweeps(result["policies"], result["setup"]["target_ms"], path, title)


def main() -> None:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifact = args.artifact or build_artifact(args)
    load_start = os.getloadavg()
    profile_path = args.workdir / "profile.json"
    subprocess.run(HOTREC + ["serve-profile", str(artifact), "--out", str(profile_path),
                             "--threads", str(args.threads), "--devices", args.devices,
                             "--repeats", "20", "--max-seconds", "1"], check=True)  # fmt: skip
    profile = Profile.load(profile_path)
    policies = ["mprec"] + [f"static:{name}" for name in profile.paths]
    servers = {p: start_server(args, artifact, profile_path, p) for p in policies}
    try:
        infos = {p: wait_ready(url, proc) for p, (proc, url) in servers.items()}
        info = infos["mprec"]
        ds = open_dataset(args.data or info["dataset"])
        queries = build_queries(ds.split("test"), QuerySizes(), args.queries, args.seed)
        mean_items = float(np.mean([q.size for q in queries]))
        capacity = {p: sequential_capacity(url, queries) for p, (_, url) in servers.items()}
        typical = round(mean_items)
        fastest = min(profile.paths.values(), key=lambda p: p.latency_ms(typical, "median"))
        fast_qps = capacity[f"static:{fastest.path.name}"]  # every server warmed up above
        rates = ([float(r) for r in args.rates.split(",")] if args.rates
                 else auto_rates(args, profile, fast_qps, mean_items))  # fmt: skip
        accuracy = {p["name"]: p["accuracy"] for p in info["paths"]}
        print(f"rates {rates} queries/s; sequential capacity on {fastest.path.name}: "
              f"{fast_qps:.0f} queries/s")  # fmt: skip
        rows: dict[str, list[dict]] = {p: [] for p in policies}
        for i, rate in enumerate(rates):
            order = policies[i % len(policies) :] + policies[: i % len(policies)]
            for p in order:
                url = servers[p][1] + "/predict"
                records, wall = asyncio.run(
                    run_rate(url, queries, rate, args.duration, args.seed + i, 10.0)
                )
                row = summarize(records, wall, rate, args.target_ms, args.percentile, accuracy)
                rows[p].append(row)
                print(f"{rate:7.1f} q/s {p:>20}: p99 {row['p99_ms']:8.1f} ms, within "
                      f"{row['within_target_share']:6.1%}, 503 {row['rejected']:4d}, "
                      f"correct/s {row['correct_per_s']:9.0f}, mix {row['path_mix']}")  # fmt: skip
                time.sleep(1.0)
    finally:
        codes = {}
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for p, (proc, _) in servers.items():
            codes[p] = proc.wait(timeout=60)
    accurate = "static:" + max(profile.paths.values(), key=lambda q: (q.accuracy, q.auc)).path.name
    comparison = compare(rows, accurate)
    ratios = [c["vs_best_static"] for c in comparison if c["vs_best_static"] is not None]
    result = {
        "benchmark": "serving",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "artifact": str(artifact),
            "artifact_name": artifact.parent.name + "/" + artifact.name,
            "paths": info["paths"],
            "target_ms": args.target_ms,
            "percentile": args.percentile,
            "duration_s": args.duration,
            "query_sizes": "lognormal(mu 5.1, sigma 0.2) capped at 1024 (DeepRecSys)",
            "mean_query_items": mean_items,
            "server_torch_threads": args.threads,
            "max_queue": args.max_queue,
            "server_overhead_ms": args.overhead_ms,
            "sequential_capacity_qps": capacity,
            "metric": f"{METRIC}: sum over queries answered within the target of query size x "
            "the path's validation accuracy, per second (the issue's definition); "
            "correct_per_s counts predictions matching the labels instead",
            "note": "servers and the load generator share this machine's cores; other "
            "processes may have run at the same time",
            "server_exit_codes": codes,
            "loadavg_1_5_15_min_start": load_start,
            "loadavg_1_5_15_min_end": os.getloadavg(),
        },
        "profile": {n: p.to_dict() for n, p in profile.paths.items()},
        "policies": rows,
        "comparison": comparison,
        "targets": {
            "max_vs_best_static": max(ratios, default=None),
            "min_vs_best_static": min(ratios, default=None),
            "met_2_5x_somewhere": bool(ratios) and max(ratios) >= 2.5,
            "never_worse_than_best_static": bool(ratios) and min(ratios) >= 1.0,
            "max_vs_accurate_static": max(
                (c["vs_accurate_static"] for c in comparison if c["vs_accurate_static"]),
                default=None,
            ),
        },
    }
    print_table(comparison)
    save(args, "serving", result, plot)


def print_table(comparison: list[dict]) -> None:
    print(f"{'offered q/s':>11} {'mprec c/s':>10} {'best static':>20} {'its c/s':>9} "
          f"{'ratio':>6} {'vs accurate':>11}")  # fmt: skip
    for c in comparison:
        best = c["vs_best_static"]
        acc = c["vs_accurate_static"]
        print(f"{c['offered_qps']:11.1f} {c['mprec_correct_per_s']:10.0f} {c['best_static']:>20} "
              f"{c['best_static_correct_per_s']:9.0f} "
              f"{'-' if best is None else f'{best:.2f}x':>6} "
              f"{'-' if acc is None else f'{acc:.2f}x':>11}")  # fmt: skip


if __name__ == "__main__":
    main()
