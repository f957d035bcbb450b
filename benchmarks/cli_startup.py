"""Start-up time of `hotrec --help` (and `hotrec train --help`) for this source tree against
another one, e.g. a worktree of an earlier commit:

    git worktree add /tmp/hotrec-before <commit>
    python benchmarks/cli_startup.py --before /tmp/hotrec-before/src

Each round runs every command once per tree in alternating order, in fresh interpreters with
PYTHONPATH pointing at the tree's src/; reports medians, spread and the after/before ratio,
and whether torch was imported (the commands that do not train must not pay for it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import (
    RESULTS,
    command_line,
    commit_of,
    machine,
    ratio_summary,
    start_plot,
    write_result,
)

HERE = Path(__file__).resolve().parents[1] / "src"
COMMANDS = {"hotrec --help": ["--help"], "hotrec train --help": ["train", "--help"]}


def run_once(src: Path, argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hotrec.cli.main", *argv],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def imports_torch(src: Path) -> bool:
    code = "import sys, hotrec.cli.main; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    return out.stdout.strip() == "True"


def plot(result: dict, path: Path) -> None:
    plt = start_plot()
    names = list(result["commands"])
    fig, ax = plt.subplots(figsize=(6, 3))
    width = 0.38
    for k, tree in enumerate(("before", "after")):
        medians = [result["commands"][n][tree]["median_s"] * 1e3 for n in names]
        ax.bar([i + (k - 0.5) * width for i in range(len(names))], medians, width, label=tree)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("median wall time (ms)")
    ax.set_title("CLI start-up, fresh interpreter")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--before", type=Path, required=True, help="src/ of the reference tree")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default="cli_startup")
    args = p.parse_args()
    trees = {"before": args.before.resolve(), "after": HERE}
    times = {c: {t: [] for t in trees} for c in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache
        for src in trees.values():
            run_once(src, argv)
    for r in range(args.rounds):
        order = list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]
        for c, argv in COMMANDS.items():
            for tree, src in order:
                times[c][tree].append(run_once(src, argv))
    result = {"benchmark": "cli_startup", "command": command_line(), "machine": machine(),
              "rounds": args.rounds, "commands": {},
              "trees": {t: {"src": str(src), "commit": commit_of(src)} for t, src in trees.items()}}  # fmt: skip
    for c in COMMANDS:
        row = {}
        for tree in trees:
            t = times[c][tree]
            row[tree] = {"median_s": round(statistics.median(t), 4),
                         "min_s": round(min(t), 4), "max_s": round(max(t), 4)}  # fmt: skip
        row["after_over_before"] = ratio_summary(times[c]["after"], times[c]["before"])
        result["commands"][c] = row
        print(f"{c:22s} before {row['before']['median_s'] * 1e3:6.1f} ms  after "
              f"{row['after']['median_s'] * 1e3:6.1f} ms  ratio {row['after_over_before']['median']:.3f} "
              f"({row['after_over_before']['min']:.3f}-{row['after_over_before']['max']:.3f})")  # fmt: skip
    result["imports_torch"] = {t: imports_torch(src) for t, src in trees.items()}
    print(f"imports torch: {result['imports_torch']}")
    path = write_result(args.name, result, args.out)
    plot(result, args.out / f"{args.name}.png")
    print(f"wrote {path} and {args.name}.png\nreproduce: {result['command']}")


if __name__ == "__main__":
    main()
