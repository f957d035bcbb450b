"""The four placement schedules side by side on the same data and model.

baseline (rows on host, MLPs on the device), device_only, fae and hotline, one epoch each
(repeated --rounds times, interleaved), on a synthetic criteo-kaggle-profile dataset. Reports
epoch time, samples/s, bytes moved between host and device, the hot-input share and val AUC.
On a CPU-only machine "device" is the CPU too: the bytes are the logical traffic a GPU run
would move, and the speed shows the schedules' own overhead, not a PCIe saving.
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
    ratio_summary,
    save,
    training_args,
)
from hotrec.config import load_config
from hotrec.placement.popularity import parse_bytes
from hotrec.training.runs import start_run

SCHEDULES = ("baseline", "device_only", "fae", "hotline")


def variant(name: str) -> list[str]:
    """Config overrides of a variant: a schedule, with "+slipstream" the filter over it."""
    schedule, _, extra = name.partition("+")
    return [f"placement.schedule={schedule!r}"] + (["placement.slipstream=true"] if extra else [])


def run(args: argparse.Namespace) -> dict:
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    common = [
        f"data.path={str(data)!r}",
        f"train.device={args.device!r}",
        "train.checkpoint_every=0",
        f"placement.hot_budget={args.hot_budget!r}",
        f"train.precision={args.precision!r}",
    ]
    variants = list(SCHEDULES)
    if args.slipstream:
        variants += [f"{s}+slipstream" for s in SCHEDULES]
    runs: dict[str, list[dict]] = {s: [] for s in variants}
    for r in range(args.rounds):
        for s in variants if r % 2 == 0 else variants[::-1]:  # interleaved, order alternating
            cfg = load_config("dlrm-reference", common + variant(s))
            trainer = start_run(cfg, args.workdir / f"run-sched-{s}", overwrite=True)
            res = trainer.fit()
            runs[s].append(
                {
                    "wall_s": res["wall_s"],
                    "samples_per_s": res["samples_per_s"],
                    "val_auc": res["val"]["auc"],
                    "placement": res["placement"],
                    "time_split_s": res["time_split_s"],
                    "table_bytes": trainer.model.embeddings.store.nbytes(),
                }
            )
            print(
                f"round {r} {s}: {res['samples_per_s']:,.0f} samples/s, {res['wall_s']:.1f} s, "
                f"val AUC {res['val']['auc']:.5f}, {res['placement']}"
            )
    summary = {}
    base_rates = [x["samples_per_s"] for x in runs["baseline"]]
    for s, rs in runs.items():
        rates = [x["samples_per_s"] for x in rs]
        summary[s] = {
            "epoch_s": round(statistics.median(x["wall_s"] for x in rs), 2),
            "samples_per_s": round(statistics.median(rates), 1),
            "samples_per_s_range": [round(min(rates), 1), round(max(rates), 1)],
            "speed_vs_baseline_per_round": ratio_summary(rates, base_rates),
            "val_auc": round(rs[-1]["val_auc"], 6),
            "h2d_MiB": round(rs[-1]["placement"].get("h2d_bytes", 0) / 2**20, 1),
            "d2h_MiB": round(rs[-1]["placement"].get("d2h_bytes", 0) / 2**20, 1),
            "hot_input_share": rs[-1]["placement"].get("hot_input_share"),
            "time_split_s": rs[-1]["time_split_s"],
        }
    for s in variants:  # what a CUDA device would wait for, counted on the emulated device
        if args.sync_steps:
            cfg = load_config("dlrm-reference", common[:1] + common[2:] + variant(s) + [
                "train.device='emulated'", "train.precision='fp32'",
                f"train.max_steps={args.sync_steps}"])  # fmt: skip
            res = start_run(cfg, args.workdir / f"run-sync-{s}", overwrite=True).fit()
            summary[s]["emulated_syncs_per_step"] = res["syncs_per_step"]
            print(f"{s}: {res['syncs_per_step']}")
    base = summary["baseline"]
    for s in variants:
        summary[s]["speed_vs_baseline"] = round(
            summary[s]["samples_per_s"] / base["samples_per_s"], 3
        )
        summary[s]["auc_minus_baseline"] = round(summary[s]["val_auc"] - base["val_auc"], 6)
    return {
        "benchmark": "schedules",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "hot_budget": args.hot_budget,
            "hot_budget_bytes": parse_bytes(args.hot_budget),
            "table_bytes": runs["baseline"][-1]["table_bytes"],
            "rounds": args.rounds,
            "device": args.device,
            "precision": args.precision,
            "epochs": 1,
        },
        "schedules": summary,
        "gpu": "not run: no GPU was lent to this task" if args.device != "cuda" else None,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sched = result["schedules"]
    names = list(sched)
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 4))
    a.bar(names, [sched[n]["samples_per_s"] for n in names], color="C0")
    for i, n in enumerate(names):
        a.text(
            i,
            sched[n]["samples_per_s"],
            f"{sched[n]['speed_vs_baseline']:.2f}x",
            ha="center",
            va="bottom",
        )
    a.set_ylabel("samples/s")
    a.set_title("training speed (1 epoch)", fontsize=10)
    b.bar(names, [sched[n]["h2d_MiB"] for n in names], label="host->device", color="C1")
    b.bar(
        names,
        [sched[n]["d2h_MiB"] for n in names],
        bottom=[sched[n]["h2d_MiB"] for n in names],
        label="device->host",
        color="C2",
    )
    b.set_ylabel("MiB moved (embedding rows and gradients)")
    b.legend(fontsize=8)
    b.set_title("host-device traffic", fontsize=10)
    c.bar(names, [sched[n]["val_auc"] for n in names], color="C3")
    lo = min(sched[n]["val_auc"] for n in names)
    c.set_ylim(lo - 0.01, lo + 0.01)
    c.set_ylabel("val AUC")
    c.set_title("quality", fontsize=10)
    s = result["setup"]
    for ax in (a, b, c):
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    finish_plot(fig, result, path, f"device={s['device']}, "
                f"tables {s['table_bytes'] / 2**20:,.0f} MiB, hot budget {s['hot_budget']}")  # fmt: skip


def main() -> None:
    p = training_args(__doc__)
    p.add_argument("--hot-budget", default="16MiB", help="device bytes for hot rows (fae, hotline)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (order alternating)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--slipstream", action="store_true", help="each schedule with Slipstream too")
    p.add_argument(
        "--sync-steps",
        type=int,
        default=20,
        help="steps per schedule on the emulated device to count syncs (0 = skip)",
    )
    args = p.parse_args()
    result = run(args)
    for s, v in result["schedules"].items():
        print(
            f"{s:12s} {v['samples_per_s']:>10,.0f} samples/s  {v['speed_vs_baseline']:.2f}x  "
            f"val AUC {v['val_auc']:.5f} ({v['auc_minus_baseline']:+.5f})  h2d {v['h2d_MiB']:,.0f} MiB"
        )
    save(args, "schedules", result, plot)


if __name__ == "__main__":
    main()
