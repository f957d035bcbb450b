"""The four placement schedules, this source tree against another (e.g. before a refactor):

    git worktree add /tmp/hotrec-before <commit>
    python benchmarks/schedules_compare.py --before /tmp/hotrec-before/src --rows 300000 --rounds 5

(--after defaults to this tree; give a worktree of a commit too if you edit this one while
the benchmark runs.)

Each round trains one epoch of every schedule under both trees, alternating which tree goes
first, each run in a fresh interpreter with PYTHONPATH at the tree's src/ (same dataset, same
config: the dlrm-reference preset on the synthetic criteo-kaggle profile). Reports per
schedule the median epoch time of each tree, the per-round ratio after/before (median, min,
max) and both val AUCs. The question it answers: is any schedule slower than before beyond
the spread?
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import (
    RESULTS,
    command_line,
    commit_of,
    kaggle_like_dataset,
    machine,
    ratio_summary,
    start_plot,
    write_result,
)

HERE = Path(__file__).resolve().parents[1] / "src"
SCHEDULES = ("baseline", "device_only", "fae", "hotline")


def worker(args: argparse.Namespace) -> None:
    """One epoch of one schedule with whatever hotrec PYTHONPATH points at; JSON on stdout."""
    from hotrec.config import load_config
    from hotrec.training.runs import start_run

    cfg = load_config(
        "dlrm-reference",
        [
            f"data.path={args.data!r}",
            "train.device='cpu'",
            "train.checkpoint_every=0",
            f"placement.schedule={args.schedule!r}",
            f"placement.hot_budget={args.hot_budget!r}",
        ],
    )
    res = start_run(cfg, Path(args.run_dir), overwrite=True).fit()
    out = {"wall_s": res["wall_s"], "samples_per_s": res["samples_per_s"],
           "val_auc": res["val"]["auc"]}  # fmt: skip
    print("RESULT " + json.dumps(out))


def run_one(src: Path, args: argparse.Namespace, data: Path, schedule: str, tag: str) -> dict:
    env = {**os.environ, "PYTHONPATH": f"{src}:{Path(__file__).resolve().parent}",
           "HOTREC_PROGRESS": "0"}  # fmt: skip
    cmd = [sys.executable, __file__, "--worker", "--schedule", schedule, "--data", str(data),
           "--hot-budget", args.hot_budget, "--run-dir", str(args.workdir / f"cmp-{tag}")]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def plot(result: dict, path: Path) -> None:
    plt = start_plot()
    names = list(result["schedules"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.38
    for k, tree in enumerate(("before", "after")):
        med = [result["schedules"][n][tree]["epoch_s_median"] for n in names]
        lo = [
            m - result["schedules"][n][tree]["epoch_s_min"] for n, m in zip(names, med, strict=True)
        ]
        hi = [
            result["schedules"][n][tree]["epoch_s_max"] - m for n, m in zip(names, med, strict=True)
        ]
        ax.bar([i + (k - 0.5) * width for i in range(len(names))], med, width, yerr=[lo, hi],
               capsize=3, label=f"{tree} ({result['trees'][tree]['commit']})")  # fmt: skip
    for i, n in enumerate(names):
        r = result["schedules"][n]["after_over_before"]
        ax.text(i, 0, f"{r['median']:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("epoch time (s), median and range")
    s = result["setup"]
    ax.set_title(f"{s['rows']:,} rows, hot budget {s['hot_budget']}, {s['rounds']} rounds, "
                 f"{result['machine']['cores']} cores", fontsize=9)  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, help="src/ of the reference tree")
    p.add_argument("--after", type=Path, default=HERE, help="src/ of the tree measured (this one)")
    p.add_argument("--rows", type=int, default=300_000)
    p.add_argument("--max-table-rows", type=int, default=1_000_000)
    p.add_argument("--hot-budget", default="16MiB")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/work"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="schedules_compare_cpu")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--schedule", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)
    if args.before is None:
        p.error("--before is required")
    args.workdir.mkdir(parents=True, exist_ok=True)
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    runs = {s: {t: [] for t in trees} for s in SCHEDULES}
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for s in SCHEDULES:
            for tree, src in order:
                res = run_one(src, args, data, s, tree)
                runs[s][tree].append(res)
                print(f"round {r} {s:11s} {tree:6s} {res['wall_s']:7.2f} s  "
                      f"val AUC {res['val_auc']:.6f}", flush=True)  # fmt: skip
    summary = {}
    for s in SCHEDULES:
        row = {}
        for tree in trees:
            w = [x["wall_s"] for x in runs[s][tree]]
            row[tree] = {"epoch_s_median": round(statistics.median(w), 3),
                         "epoch_s_min": round(min(w), 3), "epoch_s_max": round(max(w), 3),
                         "val_auc": round(runs[s][tree][-1]["val_auc"], 6)}  # fmt: skip
        row["after_over_before"] = ratio_summary(
            [x["wall_s"] for x in runs[s]["after"]], [x["wall_s"] for x in runs[s]["before"]]
        )
        summary[s] = row
        print(f"{s:11s} before {row['before']['epoch_s_median']:.2f} s  after "
              f"{row['after']['epoch_s_median']:.2f} s  after/before {row['after_over_before']}")  # fmt: skip
    result = {
        "benchmark": "schedules_compare",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            **vars(args),
            "workdir": str(args.workdir),
            "out": str(args.out),
            "before": str(args.before),
            "device": "cpu",
            "epochs": 1,
        },  # fmt: skip
        "trees": {t: {"src": str(src), "commit": commit_of(src)} for t, src in trees.items()},
        "schedules": summary,
        "runs": runs,
    }
    path = write_result(args.name, result, args.out)
    plot(result, args.out / f"{args.name}.png")
    print(f"wrote {path} and {args.name}.png\nreproduce: {result['command']}")


if __name__ == "__main__":
    main()
