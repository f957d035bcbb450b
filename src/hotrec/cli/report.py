"""Tables printed at the end of commands."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from hotrec.data.format import open_dataset

console = Console()


def print_dataset_summary(path: Path) -> None:
    """One short block after prepare / synth: where, how many rows, what was rejected."""
    ds = open_dataset(path)
    splits = ", ".join(f"{k} {v:,}" for k, v in ds.meta["splits"].items())
    console.print(
        f"wrote {ds.path}: {splits} rows; {ds.schema.num_dense} dense, "
        f"{ds.schema.num_tables} tables, {ds.schema.total_rows:,} embedding rows"
    )
    rows = ds.meta.get("rows")
    if rows:
        line = (
            f"input: read {rows['rows_read']:,}, written {rows['rows_written']:,}, "
            f"rejected {rows['rows_rejected']:,}"
        )
        if rows.get("rejected"):
            line += " (" + ", ".join(f"{k} {v:,}" for k, v in rows["rejected"].items()) + ")"
        if rows.get("repaired"):
            line += "; repaired " + ", ".join(f"{k} {v:,}" for k, v in rows["repaired"].items())
        console.print(line)
        for kind, where in (rows.get("first_example") or {}).items():
            console.print(f"  first {kind}: {where}")


def print_results(result: dict, title: str = "results") -> None:
    """The results table: AUC, log loss, accuracy per split, then throughput and time split."""
    table = Table(title=title)
    for col in ("split", "AUC", "log loss", "accuracy", "rows"):
        table.add_column(col, justify="right")
    for split in ("val", "test"):
        m = result.get(split)
        if m:
            table.add_row(
                split,
                f"{m['auc']:.4f}",
                f"{m['logloss']:.4f}",
                f"{m['accuracy']:.4f}",
                f"{m['rows']:,}",
            )
    console.print(table)
    if "samples_per_s" in result:
        console.print(
            f"trained {result['steps']:,} steps ({result['samples']:,} samples) on "
            f"{result['device']} in {result['wall_s']:.1f} s: "
            f"{result['samples_per_s']:,.0f} samples/s; stopped: {result['stopped']}"
        )
    split = result.get("time_split_s")
    if split:
        console.print("time split (s): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))
