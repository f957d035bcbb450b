"""`hotrec loadtest`: Poisson load against a running `hotrec serve`, with labelled queries."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hotrec.errors import HotrecError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "loadtest",
        help="send Poisson load to a hotrec server and report latency and correct predictions/s",
        description="Open-loop Poisson arrivals at --rate queries/s (or each of --rates in turn) "
        "for --duration seconds. Queries are consecutive rows of a labelled dataset split (the "
        "server's dataset when it is on this machine), sizes lognormal(5.1, 0.2) capped at "
        "1024 (DeepRecSys) or --sizes uniform 100-700 (MLPerf). Reports p50/p95/p99 latency, "
        "throughput, share within the target, accuracy, correct predictions/s within the "
        "target and the path mix; writes JSON and a PNG.",
    )
    p.add_argument(
        "url", metavar="URL",
        help="the server's root address, e.g. http://127.0.0.1:8000 (queries go to URL/predict)",
    )  # fmt: skip
    p.add_argument("--rate", type=float, default=None, help="offered queries/s (default 20)")
    p.add_argument("--rates", default=None, help="a sweep: comma list of queries/s")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per rate (10)")
    p.add_argument(
        "--sizes", default="lognormal", choices=("lognormal", "uniform"),
        help="query sizes: lognormal (DeepRecSys, default) or uniform (MLPerf DLRM inference)",
    )  # fmt: skip
    p.add_argument("--mu", type=float, default=5.1, help="lognormal mean of log size (5.1)")
    p.add_argument("--sigma", type=float, default=0.2, help="lognormal std of log size (0.2)")
    p.add_argument("--max-size", type=int, default=1024, help="lognormal cap (1024)")
    p.add_argument("--min-uniform", type=int, default=100, help="uniform smallest (100)")
    p.add_argument("--max-uniform", type=int, default=700, help="uniform largest (700)")
    p.add_argument("--data", type=Path, default=None, help="labelled dataset (default: server's)")
    p.add_argument("--split", default="test", help="split to draw queries from (test)")
    p.add_argument("--queries", type=int, default=256, help="distinct queries built (256)")
    p.add_argument("--target-ms", type=float, default=None, help="default: the server's")
    p.add_argument("--percentile", type=float, default=None, help="default: the server's")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds before a query fails")
    p.add_argument(
        "--warmup", type=int, default=20,
        help="queries sent one by one before measuring, not counted (20)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of query sizes and arrivals (0)")
    p.add_argument("--out", type=Path, default=Path("loadtest.json"), help="JSON to write")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: --out with .png)")
    p.set_defaults(run=run)


def parse_rates(args: argparse.Namespace) -> list[float]:
    if args.rate is not None and args.rates:
        raise HotrecError("give --rate or --rates, not both")
    text = args.rates or str(args.rate if args.rate is not None else 20.0)
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise HotrecError(f"--rates takes a comma list of numbers, got {text!r}") from None
    if not rates or min(rates) <= 0:
        raise HotrecError(f"offered rates must be positive, got {text!r}")
    return rates


def open_split(info: dict, data: Path | None, split: str):
    """The labelled split to build queries from, checked against the server's schema."""
    from hotrec.data.format import open_dataset

    path = data or (Path(info["dataset"]) if info.get("dataset") else None)
    if path is None or not (path / "meta.json").is_file():
        raise HotrecError(
            f"the server's dataset ({info.get('dataset')}) is not on this machine: give --data"
        )
    ds = open_dataset(path)
    tables = [t["rows"] for t in info["tables"]]
    if ds.schema.num_dense != info["dense_features"] or ds.schema.table_rows != tables:
        raise HotrecError(f"{path} does not match the server's model (features / table rows)")
    if not ds.has_split(split):
        raise HotrecError(f"{path} has no rows in split {split!r}")
    return ds.split(split)


def run(args: argparse.Namespace) -> int:
    from hotrec.cli.report import console
    from hotrec.serving.loadgen import QuerySizes, build_queries, fetch_info, run_sweep

    rates = parse_rates(args)
    if args.duration <= 0 or args.queries < 1:
        raise HotrecError("--duration must be positive and --queries at least 1")
    info = fetch_info(args.url)
    target = args.target_ms if args.target_ms is not None else info["target_ms"]
    percentile = args.percentile if args.percentile is not None else info["percentile"]
    sizes = QuerySizes(args.sizes, args.mu, args.sigma, args.max_size, args.min_uniform,
                       args.max_uniform)  # fmt: skip
    queries = build_queries(open_split(info, args.data, args.split), sizes, args.queries, args.seed)
    accuracy = {p["name"]: p.get("accuracy") or 0.0 for p in info["paths"]}
    rows = run_sweep(args.url, queries, rates, args.duration, target, percentile, accuracy,
                     args.seed, args.timeout, label=info["policy"],
                     warmup=args.warmup)  # fmt: skip
    result = {
        "url": args.url,
        "policy": info["policy"],
        "target_ms": target,
        "percentile": percentile,
        "query_sizes": vars(sizes),
        "duration_s": args.duration,
        "paths": info["paths"],
        "rates": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print_rows(rows, info["policy"], target, percentile, console)
    png = args.plot or args.out.with_suffix(".png")
    try:
        from hotrec.serving.loadplot import plot_sweeps

        plot_sweeps({info["policy"]: rows}, target, png, title=f"hotrec loadtest {args.url}")
        console.print(f"wrote {args.out} and {png}")
    except HotrecError as e:  # matplotlib missing: the JSON is still there
        console.print(f"wrote {args.out} (no figure: {e})")
    return 0


def print_rows(rows: list[dict], policy: str, target: float, percentile: float, console) -> None:
    """One row of figures per offered rate (latencies in ms), then each rate's path mix."""
    from rich.table import Table

    table = Table(title=f"{policy}: target p{percentile:g} <= {target:g} ms")
    cols = ("offered\nq/s", "answered\nq/s", "p50\nms", "p95\nms", "p99\nms", "in\ntarget",
            "503", "accuracy", "correct/s", "label\nhits/s")  # fmt: skip
    for c in cols:
        table.add_column(c, justify="right", no_wrap=True)
    for r in rows:
        table.add_row(
            f"{r['offered_qps']:g}", f"{r['achieved_qps']:.1f}", f"{r['p50_ms']:.1f}",
            f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['within_target_share']:.1%}",
            str(r["rejected"]), f"{r['accuracy']:.4f}", f"{r['expected_correct_per_s']:,.0f}",
            f"{r['correct_per_s']:,.0f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "correct/s: items answered within the target x the path's validation accuracy; "
        "label hits/s: those of them that match the labels"
    )
    for r in rows:
        mix = ", ".join(f"{k} {v:.0%}" for k, v in r["path_mix"].items())
        failed = f"; failed {r['failed']} {r['failures']}" if r["failed"] else ""
        console.print(f"  {r['offered_qps']:g} q/s path mix: {mix}{failed}")
