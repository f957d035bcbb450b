"""`hotrec prepare`: turn raw Criteo / Avazu / MovieLens files into a dataset directory."""

from __future__ import annotations

import argparse
from pathlib import Path

from hotrec.cli.report import print_dataset_summary

SOURCES = ("criteo-kaggle", "criteo-terabyte", "avazu", "movielens")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="prepare raw data into a dataset directory",
        description="Stream raw files into the dataset directory format (meta.json + npy memory "
        "maps per split), counting malformed rows per kind. Sources: criteo-kaggle (train.txt[.gz]),"
        " criteo-terabyte (a directory of day_0 .. day_23[.gz]), avazu (train[.gz] CSV), movielens "
        "(a 100K or 1M directory).",
    )
    p.add_argument("source", choices=SOURCES, help="input format")
    p.add_argument("input", type=Path, help="input file or directory")
    p.add_argument("out", type=Path, help="dataset directory to write")
    p.add_argument("--min-count", type=int, default=1, help="values seen fewer times map to id 0")
    p.add_argument("--hash-rows", type=int, default=None, help="hash values into N rows instead")
    p.add_argument("--days", type=int, default=24, help="criteo-terabyte: use days 0..N-1")
    p.add_argument(
        "--negative-rate",
        type=float,
        default=1.0,
        help="criteo-terabyte: keep this share of negative training rows (seeded down-sampling)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the negative down-sampling")
    p.add_argument("--strict", action="store_true", help="stop at the first malformed row")
    p.add_argument("--overwrite", action="store_true", help="replace an existing directory")
    p.add_argument(
        "--history",
        action="store_true",
        help="movielens: add time-causal features, each user's and item's ratings and positive "
        "rate over all events strictly before the row's timestamp (assumes earlier labels are "
        "known at prediction time, as in online serving)",
    )
    p.add_argument(
        "--genres",
        choices=("first", "bag"),
        default="first",
        help="movielens: the genre table holds the first listed genre (first), or every listed "
        "genre as a multi-hot table with mean pooling (bag)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.history and args.source != "movielens":
        from hotrec.errors import HotrecError

        raise HotrecError("--history adds MovieLens features; it does not apply to " + args.source)
    if args.genres != "first" and args.source != "movielens":
        from hotrec.errors import HotrecError

        raise HotrecError("--genres is for MovieLens; it does not apply to " + args.source)
    common = {"strict": args.strict, "overwrite": args.overwrite}
    mapping = {"min_count": args.min_count, "hash_rows": args.hash_rows}
    if args.source == "criteo-kaggle":
        from hotrec.data.criteo import prepare_criteo_kaggle

        out = prepare_criteo_kaggle(args.input, args.out, **mapping, **common)
    elif args.source == "criteo-terabyte":
        from hotrec.data.criteo import prepare_criteo_terabyte

        out = prepare_criteo_terabyte(
            args.input,
            args.out,
            days=args.days,
            negative_rate=args.negative_rate,
            seed=args.seed,
            **mapping,
            **common,
        )
    elif args.source == "avazu":
        from hotrec.data.avazu import prepare_avazu

        out = prepare_avazu(args.input, args.out, **mapping, **common)
    else:
        from hotrec.data.movielens import prepare_movielens

        out = prepare_movielens(
            args.input, args.out, history=args.history, genres=args.genres, **common
        )
    print_dataset_summary(out)
    return 0
