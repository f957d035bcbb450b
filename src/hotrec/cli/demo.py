"""`hotrec demo`: synthesize the default dataset if missing, train, print the results table."""

from __future__ import annotations

import argparse
from pathlib import Path

from hotrec.cli.report import console, print_dataset_summary, print_results
from hotrec.config import load_config

# A scaled criteo-kaggle profile that trains in a few minutes on 2 cores.
DEMO_ROWS = 4_000_000
DEMO_SCALE = 0.01


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="synthesize a dataset, train and print the results table",
        description=f"The main job end to end: a synthetic criteo-kaggle-profile dataset "
        f"({DEMO_ROWS:,} rows, cardinalities x{DEMO_SCALE}) unless DATA already exists, then "
        "one epoch of the criteo-kaggle DLRM preset.",
    )
    p.add_argument("--data", type=Path, default=Path("data/demo-kaggle"), help="dataset directory")
    p.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="run directory")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.data.format import META
    from hotrec.data.synthetic import synthesize
    from hotrec.training.lock import run_dir_lock
    from hotrec.training.runs import start_run

    if not (args.data / META).exists():
        console.print(f"synthesizing {args.data} (criteo-kaggle profile, {DEMO_ROWS:,} rows)")
        synthesize(args.data, profile="criteo-kaggle", rows=DEMO_ROWS, scale=DEMO_SCALE, seed=0)
    print_dataset_summary(args.data)
    cfg = load_config(
        "criteo-kaggle", [f"data.path={str(args.data)!r}", f"train.device={args.device!r}"]
    )
    with run_dir_lock(args.run_dir):  # one writer: a second demo there is refused by name
        trainer = start_run(cfg, args.run_dir, overwrite=True)
        console.print(f"training the criteo-kaggle DLRM preset; run directory {args.run_dir}")
        console.print(f"precision: {trainer.precision} ({trainer.precision_why})")
        result = trainer.fit()
    print_results(result, title="hotrec demo: criteo-kaggle preset on synthetic data")
    return 0
