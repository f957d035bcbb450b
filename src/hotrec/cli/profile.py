"""`hotrec profile`: sample a split's lookups, pick the hot rows that fit a device budget."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.table import Table

from hotrec.errors import HotrecError
from hotrec.progress import wide_console

CURVE_STEPS = range(-6, 3)  # budgets from 1/64x to 4x the chosen one, doubling


def add_parser(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="find the hot embedding rows that fit a device memory budget",
        description="Count lookups per embedding row over a seeded sample of whole blocks of "
        "inputs, keep the most accessed rows that fit --hot-budget bytes of rows of --dim "
        "float32 values (FAE's hot set), and report which share of lookups and of inputs "
        "(all lookups hot) they cover, also for budgets from 1/64x to 4x the given one.",
    )
    p.add_argument("dataset", type=Path, help="dataset directory (hotrec prepare / synth)")
    p.add_argument(
        "--hot-budget",
        default="256MiB",
        metavar="BYTES",
        help="device bytes for hot rows, e.g. 256MiB, 1GiB, 512KB, 1000000 (default 256MiB)",
    )
    p.add_argument(
        "--dim",
        type=int,
        default=16,
        help="embedding width D; must match the model's embedding_dim (default 16)",
    )
    p.add_argument(
        "--sample",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="share of inputs sampled, in whole blocks of --block-rows (default 0.05)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the block sample")
    p.add_argument("--block-rows", type=int, default=65536, help="inputs per sampled block")
    p.add_argument("--split", default="train", help="split to profile (default train)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="PATH",
        help="hot-set file to write (default runs/profile/<dataset name>-hotset.npz; never "
        "inside the dataset directory)",
    )
    p.add_argument("--plot", type=Path, default=None, metavar="PNG", help="also write a figure")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.placement.hotset import HotSet
    from hotrec.placement.popularity import (
        PopularityProfiler,
        hot_input_share_curve,
        parse_bytes,
    )

    budget = parse_bytes(args.hot_budget)
    if budget < 1:
        raise HotrecError(f"--hot-budget must be at least one byte, got {args.hot_budget!r}")
    if args.dim < 1:
        raise HotrecError(f"--dim must be >= 1, got {args.dim}")
    if args.plot:
        from hotrec.placement.popularity_plot import require_pyplot

        require_pyplot()  # fail before the work, not after it
    from hotrec.data.format import open_dataset
    from hotrec.data.loader import jagged_ids

    ds = open_dataset(args.dataset)
    out = args.out or Path("runs") / "profile" / f"{ds.path.resolve().name}-hotset.npz"
    if _inside(out, ds.path):
        raise HotrecError(f"{out} is inside the dataset directory; choose another --out")
    schema = ds.schema
    split = ds.split(args.split)
    sparse = split.sparse
    bags = None
    if split.layout is not None:  # multi-hot: every id of every bag is a lookup
        bags = lambda a, b: jagged_ids(split, slice(a, b))  # noqa: E731
    start = time.perf_counter()
    profiler = PopularityProfiler(args.sample, args.seed, args.block_rows)
    profiler.fit(sparse, schema.table_rows, [t.name for t in schema.tables], bags=bags)
    hot = HotSet.from_profile(profiler, budget, args.dim)
    budgets = [max(1, int(budget * 2.0**k)) for k in CURVE_STEPS]
    curve = hot_input_share_curve(profiler, args.dim, budgets)
    seconds = time.perf_counter() - start
    hot.stats.update(dataset=str(ds.path), split=args.split)
    hot.save(out)

    console = wide_console()
    console.print(
        f"profiled {profiler.sampled_inputs_:,} of {len(sparse):,} {args.split} inputs "
        f"({profiler.sampled_blocks_} block(s) of up to {args.block_rows:,}, seed {args.seed}) "
        f"in {seconds:.1f}s"
    )
    console.print(_tables_view(profiler, hot))
    s = hot.stats
    console.print(
        f"hot lookups {s['lookup_share']:.1%}, hot inputs {s['input_share']:.1%} "
        f"(all lookups hot; of {s['share_inputs']:,} sampled inputs)"
    )
    console.print(_curve_view(curve, budget))
    console.print(f"wrote {out}")
    if args.plot:
        from hotrec.placement.popularity_plot import plot_profile

        title = f"{ds.path.name} ({args.split}, {args.sample * 100:g}% sample), dim {args.dim}"
        console.print(f"wrote {plot_profile(profiler, curve, budget, args.plot, title)}")
    return 0


def _inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _tables_view(profiler, hot) -> Table:
    import numpy as np

    """Per table: rows, rows seen in the sample, hot rows, share of its lookups that are hot."""
    from hotrec.placement.bytesize import format_bytes

    s = hot.stats
    table = Table(
        title=f"hot set: {s['hot_rows']:,} rows of capacity {s['capacity']:,} "
        f"({format_bytes(s['budget_bytes'])} at dim {s['dim']} x {s['bytes_per_value']} B)",
    )
    for col in ("table", "rows", "seen", "hot rows", "hot lookup share"):
        table.add_column(col, justify="right")
    for t, name in enumerate(profiler.table_names_):
        table.add_row(
            name,
            f"{profiler.table_rows_[t]:,}",
            f"{int(np.count_nonzero(profiler.table_counts(t))):,}",
            f"{s['hot_rows_per_table'][name]:,}",
            f"{s['lookup_share_per_table'][name]:.1%}",
        )
    table.add_section()
    table.add_row(
        "all",
        f"{s['total_rows']:,}",
        f"{s['seen_rows']:,}",
        f"{s['hot_rows']:,}",
        f"{s['lookup_share']:.1%}",
        style="bold",
    )
    return table


def _curve_view(curve: list[dict], chosen: int) -> Table:
    """Hot-row capacity, lookup share and input share for each budget of the curve."""
    from hotrec.placement.bytesize import format_bytes

    table = Table(title="hot share vs device budget")
    for col in ("budget", "capacity", "hot rows", "lookup share", "input share"):
        table.add_column(col, justify="right")
    for p in curve:
        table.add_row(
            format_bytes(p["budget_bytes"]),
            f"{p['capacity']:,}",
            f"{p['hot_rows']:,}",
            f"{p['lookup_share']:.1%}",
            f"{p['input_share']:.1%}",
            style="bold" if p["budget_bytes"] == chosen else None,
        )
    return table
