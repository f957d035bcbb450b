"""Serving under overload: offered vs answered vs answered within the target, for the server
without admission (`--no-admission`: every query the queue has room for is accepted, as
before deadline-aware admission) and with it (the default).

One artifact (the table representation trained here on a synthetic criteo-kaggle dataset,
or --artifact), profiled once (`hotrec serve-profile`), and one `hotrec serve` per variant,
both started at once. Capacity: the most answers within the target per second that
closed-loop clients (1 to 16 at once) get from the server without admission, before any
overload. Then for --rounds rounds, for each offered multiple of the capacity, each variant
in turn (the order alternating) gets Poisson arrivals of labelled test queries (lognormal
sizes, DeepRecSys) for --duration seconds. Per variant and multiple: medians with min-max
over the rounds of answered and within-target queries/s, their share of the capacity, 503s
and p50/p99. The server and this load generator share the machine's cores.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

from serving import serve_process, wait_ready

from common import (
    RESULTS,
    command_line,
    kaggle_like_dataset,
    machine,
    spread,
    start_plot,
    write_result,
)
from hotrec.data.format import open_dataset
from hotrec.serving.loadgen import QuerySizes, build_queries, capacity, run_rate, summarize

HOTREC = [sys.executable, "-m", "hotrec.cli.main"]
VARIANTS = {"no admission": ["--no-admission"], "admission": []}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--artifact", type=Path, default=None, help="artifact to serve")
    p.add_argument("--rows", type=int, default=200_000, help="synthetic rows (no --artifact)")
    p.add_argument("--max-table-rows", type=int, default=1_000_000)
    p.add_argument("--multiples", default="0.5,1,2,3,5", help="offered load / capacity")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per run")
    p.add_argument("--target-ms", type=float, default=25.0)
    p.add_argument("--overhead-ms", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    p.add_argument("--queries", type=int, default=300, help="distinct labelled queries")
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/work/serving-overload"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="serving_overload_cpu")
    return p.parse_args()


def build_artifact(args: argparse.Namespace) -> Path:
    """The table representation trained on the synthetic dataset once (reused afterwards)."""
    run = args.workdir / f"table-{args.rows}"
    if not (run / "artifact" / "manifest.json").exists():
        data = kaggle_like_dataset(args.workdir.parent, args.rows, args.max_table_rows)
        subprocess.run(HOTREC + ["train", "--data", str(data), "--representations", "table",
                                 "--run-dir", str(run), "--epochs", "1", "--overwrite"],
                       check=True)  # fmt: skip
    return run / "artifact"


def start(args, artifact: Path, profile: Path, extra: list[str], log: Path):
    return serve_process(artifact, log, "--profile", profile, "--threads", args.threads,
                         "--target-ms", args.target_ms, "--overhead-ms", args.overhead_ms,
                         *extra)  # fmt: skip


def main() -> None:
    args = parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    artifact = args.artifact or build_artifact(args)
    profile = args.workdir / "profile.json"
    subprocess.run(HOTREC + ["serve-profile", str(artifact), "--out", str(profile), "--threads",
                             str(args.threads), "--repeats", "20", "--max-seconds", "1"],
                   check=True)  # fmt: skip
    servers = {
        v: start(args, artifact, profile, extra, args.workdir / f"server-{v.replace(' ', '-')}.log")
        for v, extra in VARIANTS.items()
    }
    multiples = [float(m) for m in args.multiples.split(",")]
    runs: dict[str, dict[float, list[dict]]] = {v: {m: [] for m in multiples} for v in servers}
    try:
        info = {v: wait_ready(url, proc) for v, (proc, url) in servers.items()}["admission"]
        split = open_dataset(info["dataset"]).split("test")
        queries = build_queries(split, QuerySizes(), args.queries)
        cap, best_c = capacity(servers["no admission"][1], queries, args.target_ms, 2.0,
                               (1, 2, 4, 8, 16))  # fmt: skip
        print(f"capacity: {cap:.1f} queries/s within {args.target_ms:g} ms ({best_c} clients)")
        for rnd in range(args.rounds):
            for i, m in enumerate(multiples):
                order = list(servers) if (rnd + i) % 2 == 0 else list(servers)[::-1]
                for v in order:
                    url = servers[v][1] + "/predict"
                    records, wall = asyncio.run(
                        run_rate(url, queries, m * cap, args.duration, seed=rnd * 100 + i)
                    )
                    row = summarize(records, wall, m * cap, args.target_ms, 99.0, {})
                    row["within_qps"] = row["within_target_share"] * row["sent"] / wall
                    runs[v][m].append(row)
                    print(f"round {rnd + 1} {m:g}x {v:>12}: answered {row['achieved_qps']:6.1f}"
                          f"/s, within target {row['within_qps']:6.1f}/s "
                          f"({row['within_qps'] / cap:.2f} of capacity), 503 "
                          f"{row['rejected']:5d}, p99 {row['p99_ms']:7.1f} ms")  # fmt: skip
                    time.sleep(1.0)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in servers.values():
            proc.wait(timeout=60)
    table = {
        v: [
            {
                "multiple": m,
                "offered_qps": round(m * cap, 1),
                "answered_qps": spread([r["achieved_qps"] for r in rows]),
                "within_target_qps": spread([r["within_qps"] for r in rows]),
                "within_target_of_capacity": spread([r["within_qps"] / cap for r in rows]),
                "rejected_share": spread([r["rejected"] / r["sent"] for r in rows]),
                "p50_ms": spread([r["p50_ms"] for r in rows]),
                "p99_ms": spread([r["p99_ms"] for r in rows]),
                "client_late_p99_ms": spread([r["client_late_p99_ms"] for r in rows]),
            }
            for m, rows in per.items()
        ]
        for v, per in runs.items()
    }
    result = {
        "benchmark": "serving_overload",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "artifact": str(artifact),
            "target_ms": args.target_ms,
            "overhead_ms": args.overhead_ms,
            "duration_s": args.duration,
            "rounds": args.rounds,
            "capacity_qps": round(cap, 1),
            "capacity_clients": best_c,
            "query_sizes": "lognormal(mu 5.1, sigma 0.2) capped at 1024 (DeepRecSys)",
            "note": "server and load generator share the machine's cores",
        },
        "variants": table,
    }
    path = write_result(args.name, result, args.out)
    plot(result, args.out / f"{args.name}.png")
    print(f"wrote {path}\nreproduce: {result['command']}")


def plot(result: dict, path: Path) -> None:
    plt = start_plot()
    cap = result["setup"]["capacity_qps"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for (v, rows), color in zip(result["variants"].items(), ("tab:red", "tab:blue"), strict=True):
        x = [r["offered_qps"] for r in rows]
        for key, style, what in (("answered_qps", ":", "answered"),
                                 ("within_target_qps", "-", "within target")):  # fmt: skip
            y = [r[key]["median"] for r in rows]
            err = [[a - r[key]["min"] for a, r in zip(y, rows, strict=True)],
                   [r[key]["max"] - a for a, r in zip(y, rows, strict=True)]]  # fmt: skip
            ax.errorbar(x, y, yerr=err, linestyle=style, marker="o", color=color, capsize=3,
                        label=f"{v}: {what}")  # fmt: skip
    ax.axhline(cap, color="grey", linestyle="--", linewidth=1, label="capacity")
    ax.axhline(0.7 * cap, color="grey", linestyle=":", linewidth=1, label="70% of capacity")
    ax.set_xlabel("offered load (queries/s)")
    ax.set_ylabel("queries/s (median, min-max over rounds)")
    ax.set_title(f"target {result['setup']['target_ms']:g} ms, {result['machine']['cores']} "
                 "cores shared with the load generator", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
