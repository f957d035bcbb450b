"""Multi-hot training across the placement schedules: samples/s and bytes moved.

A synthetic criteo-kaggle-profile dataset made multi-hot as MLPerf's multi-hot Criteo is
(`--bag-sizes mlperf`: 214 ids per sample over 26 tables, sum pooling; each bag led by the
one-hot id), trained one epoch (the criteo-kaggle preset) with each of baseline, device_only, fae and hotline, plus the
baseline on the one-hot source data (26 ids per sample) for the cost of the bags. Variants
run interleaved for --rounds rounds (order alternating); reports median samples/s with
min-max, per-round ratios to the multi-hot baseline, embedding bytes moved host <-> device,
the hot-input share and val AUC. On a CPU-only machine "device" is the CPU too: the bytes are
the logical traffic a GPU run would move.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from common import (
    command_line,
    finish_plot,
    kaggle_like_dataset,
    machine,
    rate_summary,
    save,
    training_args,
)
from hotrec.config import load_config
from hotrec.training.runs import start_run

SCHEDULES = ("baseline", "device_only", "fae", "hotline")
ONE_HOT = "baseline (one-hot)"


def multi_hot_dataset(args: argparse.Namespace) -> tuple[Path, Path]:
    """(the one-hot source, its multi-hot copy), each made once under the work directory."""
    from hotrec.data.format import META, open_dataset
    from hotrec.data.multi_hot import make_multi_hot, parse_bag_sizes

    src = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    out = args.workdir / f"{src.name}-bags-{args.bag_sizes.replace(',', '_')}-{args.pooling}"
    if not (out / META).exists():
        ds = open_dataset(src)
        sizes = parse_bag_sizes(args.bag_sizes, ds.schema.num_tables)
        make_multi_hot(ds, out, sizes, pooling=args.pooling, seed=0)
    return src, out


def run(args: argparse.Namespace) -> dict:
    one_hot, bags = multi_hot_dataset(args)
    common = [
        f"train.device={args.device!r}",
        "train.checkpoint_every=0",
        f"placement.hot_budget={args.hot_budget!r}",
    ]
    variants = {s: (bags, s) for s in SCHEDULES} | {ONE_HOT: (one_hot, "baseline")}
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    order = list(variants)
    for r in range(args.rounds):
        for v in order if r % 2 == 0 else order[::-1]:
            data, schedule = variants[v]
            cfg = load_config(args.preset, common + [
                f"data.path={str(data)!r}", f"placement.schedule={schedule!r}"])  # fmt: skip
            name = v.replace(" ", "-").replace("(", "").replace(")", "")
            res = start_run(cfg, args.workdir / f"run-mh-{name}", overwrite=True).fit()
            runs[v].append(
                {
                    "samples_per_s": res["samples_per_s"],
                    "wall_s": res["wall_s"],
                    "val_auc": res["val"]["auc"],
                    "placement": res["placement"],
                }
            )
            print(f"round {r} {v}: {res['samples_per_s']:,.0f} samples/s, {res['placement']}")
    base = [x["samples_per_s"] for x in runs["baseline"]]
    summary = {}
    for v, rs in runs.items():
        rates = [x["samples_per_s"] for x in rs]
        last = rs[-1]["placement"]
        summary[v] = {
            **rate_summary(rates, base, "vs_multi_hot_baseline"),
            "epoch_s": round(statistics.median(x["wall_s"] for x in rs), 2),
            "val_auc": round(rs[-1]["val_auc"], 6),
            "h2d_MiB": round(last.get("h2d_bytes", 0) / 2**20, 1),
            "d2h_MiB": round(last.get("d2h_bytes", 0) / 2**20, 1),
            "hot_input_share": last.get("hot_input_share"),
        }
    from hotrec.data.format import open_dataset

    meta = open_dataset(bags).meta["multi_hot"]
    return {
        "benchmark": "multi_hot",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "bag_sizes": meta["bag_sizes"],
            "ids_per_sample": sum(meta["bag_sizes"]),
            "pooling": meta["pooling"],
            "hot_budget": args.hot_budget,
            "rounds": args.rounds,
            "device": args.device,
            "preset": args.preset,
            "epochs": 1,
        },
        "variants": summary,
        "gpu": "not run: no GPU was lent to this task" if args.device != "cuda" else None,
    }


def plot(result: dict, path: Path) -> None:
    from common import start_plot

    plt = start_plot()
    v = result["variants"]
    names = list(v)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4))
    med = [v[n]["samples_per_s"] for n in names]
    lo = [m - v[n]["samples_per_s_range"][0] for m, n in zip(med, names, strict=True)]
    hi = [v[n]["samples_per_s_range"][1] - m for m, n in zip(med, names, strict=True)]
    a.bar(names, med, yerr=[lo, hi], capsize=3, color="C0")
    for i, n in enumerate(names):
        a.text(i, med[i], f"{v[n]['vs_multi_hot_baseline']['median']:.2f}x", ha="center",
               va="bottom", fontsize=8)  # fmt: skip
    a.set_ylabel("samples/s (median, min-max)")
    a.set_title("training speed, 1 epoch", fontsize=10)
    b.bar(names, [v[n]["h2d_MiB"] for n in names], label="host->device", color="C1")
    b.bar(names, [v[n]["d2h_MiB"] for n in names], bottom=[v[n]["h2d_MiB"] for n in names],
          label="device->host", color="C2")  # fmt: skip
    b.set_ylabel("MiB moved (rows and gradients)")
    b.legend(fontsize=8)
    b.set_title("host-device embedding traffic", fontsize=10)
    for ax in (a, b):
        ax.tick_params(axis="x", labelrotation=25, labelsize=8)
    s = result["setup"]
    finish_plot(fig, result, path, f"device={s['device']}, {s['rows']:,} rows, "
                f"{s['ids_per_sample']} ids per sample, hot budget {s['hot_budget']}")  # fmt: skip


def main() -> None:
    p = training_args(__doc__)
    p.set_defaults(rows=200_000)
    p.add_argument("--bag-sizes", default="mlperf", help="as hotrec synth --bag-sizes")
    p.add_argument("--pooling", default="sum", choices=("sum", "mean"), help="bag pooling")
    p.add_argument("--hot-budget", default="16MiB", help="device bytes for hot rows")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--preset",
        default="criteo-kaggle",
        help="training preset (row-wise Adagrad + Adam: plain SGD 0.1 diverges on sums of 214 rows)",
    )
    args = p.parse_args()
    result = run(args)
    for n, v in result["variants"].items():
        print(f"{n:20s} {v['samples_per_s']:>9,.0f} samples/s "
              f"{v['vs_multi_hot_baseline']['median']:.2f}x  h2d {v['h2d_MiB']:,.0f} MiB  "
              f"val AUC {v['val_auc']:.5f}")  # fmt: skip
    save(args, "multi_hot", result, plot)


if __name__ == "__main__":
    main()
