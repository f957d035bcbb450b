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
    p.add_argument(
        "--bag-sizes",
        metavar="SPEC",
        help="multi-hot: ids per bag for each table: 'mlperf' (MLPerf's multi-hot Criteo, 26 "
        "tables), one size for all, or one per table (1 keeps a table one-hot)",
    )
    p.add_argument(
        "--bag-lengths",
        default="fixed",
        choices=("fixed", "uniform"),
        help="multi-hot: every bag holds its size (fixed), or 0..size ids (uniform)",
    )
    p.add_argument(
        "--pooling", default="sum", choices=("sum", "mean"), help="multi-hot: how bags pool"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.data.synthetic import synthesize

    options = dict(
        profile=args.profile,
        rows=args.rows,
        scale=args.scale,
        max_table_rows=args.max_table_rows,
        days=args.days,
        drift=args.drift,
        seed=args.seed,
    )
    if args.bag_sizes is None:
        out = synthesize(args.out, overwrite=args.overwrite, **options)
    else:
        out = synthesize_multi_hot(args, options)
    print_dataset_summary(out)
    return 0


def synthesize_multi_hot(args: argparse.Namespace, options: dict) -> Path:
    """The one-hot dataset into a hidden sibling directory, then its multi-hot copy."""
    import os
    import shutil

    from hotrec.data.format import open_dataset
    from hotrec.data.multi_hot import make_multi_hot, parse_bag_sizes
    from hotrec.data.synthetic import synthesize
    from hotrec.data.synthetic_plan import resolve_options, schema_of
    from hotrec.errors import HotrecError

    if args.out.exists() and not args.overwrite:
        raise HotrecError(f"{args.out} already exists (use --overwrite to replace it)")
    tables = schema_of(resolve_options(**options)).num_tables
    sizes = parse_bag_sizes(args.bag_sizes, tables)  # a bad spec stops before any work
    one_hot = args.out.parent / f".{args.out.name}.one-hot-{os.getpid()}"
    try:
        src = open_dataset(synthesize(one_hot, overwrite=True, **options))
        return make_multi_hot(
            src, args.out, sizes, args.bag_lengths, args.pooling, args.seed, args.overwrite
        )
    finally:
        shutil.rmtree(one_hot, ignore_errors=True)
