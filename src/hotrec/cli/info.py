"""`hotrec info`: schema, split sizes, cardinalities and popularity skew of a dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hotrec.progress import wide_console


def add_parser(sub) -> None:
    p = sub.add_parser(
        "info",
        help="describe a dataset directory",
        description="Print the schema, split sizes, table cardinalities and a skew summary (share "
        "of lookups covered by the top 1% / 10% of rows per table, on the training split).",
    )
    p.add_argument("dataset", type=Path, help="dataset directory")
    p.add_argument(
        "--max-rows",
        type=int,
        default=2_000_000,
        help="rows scanned for the skew summary (0 = all)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="check every file against the checksums written at preparation (reads the whole "
        "dataset: minutes at Criteo scale); exit 2 naming the first file that differs",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.data.format import open_dataset
    from hotrec.data.stats import skew_summary

    ds = open_dataset(args.dataset)
    console = wide_console()
    if args.verify:  # first: a damaged file is named as such before anything reads it
        verify(ds.path, console)
    meta = ds.meta
    console.print(f"[bold]{ds.path}[/bold]  source: {meta.get('source', '?')}")
    splits = ", ".join(f"{k} {v:,}" for k, v in meta["splits"].items())
    console.print(f"splits: {splits}")
    console.print(f"dense features ({ds.schema.num_dense}): {', '.join(ds.schema.dense_names)}")
    rows = meta.get("rows")
    if rows:
        console.print(
            f"input rows: read {rows['rows_read']:,}, written {rows['rows_written']:,}, "
            f"rejected {rows['rows_rejected']:,} {rows.get('rejected') or ''}"
        )
    table = Table(title=f"{ds.schema.num_tables} tables, {ds.schema.total_rows:,} rows in all")
    for col in ("table", "rows", "seen", "top 1% share", "top 10% share"):
        table.add_column(col, justify="right")
    summary = skew_summary(ds, "train", args.max_rows or None)
    pooling = {t.name: t.pooling for t in ds.schema.tables}
    for s in summary:
        bag = f" (bag, {pooling[s['name']]})" if pooling.get(s["name"]) else ""
        table.add_row(
            s["name"] + bag,
            f"{s['rows']:,}",
            f"{s['distinct']:,}",
            f"{s['top1_share']:.1%}",
            f"{s['top10_share']:.1%}",
        )
    console.print(table)
    if summary and summary[0].get("scanned_rows") is not None:
        console.print(f"skew computed on the first {summary[0]['scanned_rows']:,} training rows")
    return 0


def verify(path: Path, console: Console) -> None:
    """Every file of the dataset against checksums.json, with progress by bytes."""
    from hotrec.integrity import read_checksums, verify_checksums
    from hotrec.progress import make_progress

    recorded = read_checksums(path) or {}
    sizes = {n: (path / n).stat().st_size for n in recorded if (path / n).is_file()}
    with make_progress("bytes") as bar:
        task = bar.add_task("verify", total=sum(sizes.values()) or 1, rate="", info="")
        names = verify_checksums(path, lambda n: bar.advance(task, sizes.get(n, 0)))
    console.print(f"verified: {len(names)} files match their checksums")
