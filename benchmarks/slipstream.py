"""Slipstream over every schedule: time saved, share skipped and AUC cost, plus AUC vs D.

Side by side on the same synthetic criteo-kaggle-profile data and model: each of baseline,
device_only, fae and hotline without and with slipstream (one epoch each), then
fae+slipstream for several targets D.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import command_line, kaggle_like_dataset, machine, save, training_args
from hotrec.config import load_config
from hotrec.training.runs import start_run

SCHEDULES = ("baseline", "device_only", "fae", "hotline")
VARIANTS = tuple((s, ss) for s in SCHEDULES for ss in (False, True))


def train(args, data: Path, schedule: str, slipstream: bool, target: float = 0.3) -> dict:
    cfg = load_config(
        "dlrm-reference",
        [
            f"data.path={str(data)!r}",
            f"train.device={args.device!r}",
            "train.checkpoint_every=0",
            f"placement.schedule={schedule!r}",
            f"placement.hot_budget={args.hot_budget!r}",
            f"placement.sample_fraction={args.profile_sample}",
            f"placement.slipstream={str(slipstream).lower()}",
            f"placement.slipstream_target={target}",
            f"train.epochs={args.epochs}",
        ],
    )
    res = start_run(cfg, args.workdir / "run-slipstream", overwrite=True).fit()
    p = res["placement"]
    return {
        "schedule": p["schedule"],
        "target": target if slipstream else 0.0,
        "wall_s": res["wall_s"],
        "samples_per_s": res["samples_per_s"],
        "val_auc": round(res["val"]["auc"], 6),
        "hot_input_share": round(p.get("hot_input_share", 1.0), 4),
        "skipped_inputs": p.get("skipped_inputs", 0),
        "skipped_share_of_hot": p.get("skipped_share_of_hot", 0.0),
        "thresholds": [e["threshold"] for e in p.get("slipstream_epochs", [])],
    }


def run(args: argparse.Namespace) -> dict:
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    runs = {}
    for schedule, ss in VARIANTS:
        r = train(args, data, schedule, ss)
        runs[r["schedule"]] = r
        print(r)
    for base in SCHEDULES:
        b, s = runs[base], runs[f"{base}+slipstream"]
        s["speedup_vs_base"] = round(b["wall_s"] / s["wall_s"], 3)
        s["auc_minus_base"] = round(s["val_auc"] - b["val_auc"], 6)
    curve = [train(args, data, "fae", d > 0, d) for d in args.curve]
    for c in curve:
        c["auc_minus_fae"] = round(c["val_auc"] - runs["fae"]["val_auc"], 6)
        print("curve", c)
    return {
        "benchmark": "slipstream",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "hot_budget": args.hot_budget,
            "profile_sample": args.profile_sample,
            "epochs": args.epochs,
            "device": args.device,
        },
        "runs": runs,
        "auc_vs_target": curve,
        "targets": {"speedup_vs_fae": 1.2, "speedup_vs_hotline": 1.175, "auc_loss_max": 0.0005},
        "gpu": "not run: no GPU was lent to this task" if args.device == "cpu" else None,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs, curve = result["runs"], result["auc_vs_target"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5))
    names = list(runs)
    a.bar(names, [runs[n]["wall_s"] for n in names], color=["C0", "C2"] * len(SCHEDULES))
    for i, n in enumerate(names):
        r = runs[n]
        a.text(
            i,
            r["wall_s"],
            f"AUC {r['val_auc']:.4f}\nskip {r['skipped_share_of_hot']:.0%}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    a.tick_params(axis="x", labelrotation=30, labelsize=7)
    a.set_ylabel("epoch time (s)")
    a.set_title("one epoch each", fontsize=10)
    xs = [c["target"] for c in curve]
    b.plot(xs, [c["auc_minus_fae"] for c in curve], "o-", label="val AUC - fae's")
    b.axhline(-0.0005, color="C3", ls="--", label="-0.0005 (target bound)")
    b2 = b.twinx()
    b2.plot(
        xs,
        [c["skipped_share_of_hot"] for c in curve],
        "s:",
        color="C2",
        label="skipped share of hot",
    )
    b.set_xlabel("target D")
    b.set_ylabel("AUC difference")
    b2.set_ylabel("skipped share of hot inputs")
    b.legend(loc="lower left", fontsize=8)
    b.set_title("fae + slipstream: AUC vs D", fontsize=10)
    fig.suptitle(
        f"{result['machine']['cpu']} ({result['machine']['cores']} cores), device={result['setup']['device']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = training_args(__doc__)
    p.add_argument("--hot-budget", default="64MiB")
    p.add_argument("--profile-sample", type=float, default=0.5, help="share of inputs profiled")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--curve", type=float, nargs="*", default=[0.0, 0.1, 0.3, 0.5, 0.7])
    args = p.parse_args()
    result = run(args)
    save(args, "slipstream", result, plot)


if __name__ == "__main__":
    main()
