"""`hotrec synth`: generate a seeded synthetic dataset with Criteo-like skew."""

from __future__ import annotations

import argparse
from pathlib import Path

from hotrec.cli.report import print_dataset_summary

PROFILE_NAMES = ("tiny", "criteo-kaggle", "criteo-terabyte")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a synthetic dataset",
        description="Generate a seeded synthetic dataset: power-law row popularity (top row >= "
        "10,000x the median row), labels from a hidden teacher model, optional drift across days.",
    )
    p.add_argument("out", type=Path, help="dataset directory to write")
    p.add_argument("--profile", default="tiny", choices=PROFILE_NAMES, help="schema profile")
    p.add_argument("--rows", type=int, default=None, help="number of rows (default: the profile's)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply table cardinalities")
    p.add_argument("--max-table-rows", type=int, default=None, help="cap every table's rows")
    p.add_argument("--days", type=int, default=7, help="days (last day halves val/test)")
    p.add_argument("--drift", type=float, default=0.0, help="0 = none .. 1 = strong drift")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing directory")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.data.synthetic import synthesize

    out = synthesize(
        args.out,
        profile=args.profile,
        rows=args.rows,
        scale=args.scale,
        max_table_rows=args.max_table_rows,
        days=args.days,
        drift=args.drift,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print_dataset_summary(out)
    return 0
