"""Tables printed at the end of commands."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from hotrec.progress import wide_console

console = wide_console()


def print_dataset_summary(path: Path) -> None:
    """One short block after prepare / synth: where, how many rows, what was rejected."""
    from hotrec.data.format import open_dataset  # numpy: only when a dataset is read

    ds = open_dataset(path)
    splits = ", ".join(f"{k} {v:,}" for k, v in ds.meta["splits"].items())
    console.print(
        f"wrote {ds.path}: {splits} rows; {ds.schema.num_dense} dense, "
        f"{ds.schema.num_tables} tables, {ds.schema.total_rows:,} embedding rows"
    )
    empty = [k for k, v in ds.meta["splits"].items() if v == 0]
    if empty:
        console.print(f"[yellow]warning: empty split(s): {', '.join(empty)} (too little input?)")
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
    """The results table: AUC, log loss, accuracy per split; training samples/s and wall time."""
    trained = "samples_per_s" in result
    extra = ("samples/s", "wall time") if trained else ()
    table = Table(title=title)
    for col in ("split", "AUC", "log loss", "accuracy", "rows", *extra):
        table.add_column(col, justify="right")
    if trained:
        rate, wall = f"{result['samples_per_s']:,.0f}", f"{result['wall_s']:.1f} s"
        table.add_row("train", "", "", "", f"{result['samples']:,}", rate, wall)
    for split in ("train", "val", "test"):
        m = result.get(split)
        if m:
            cells = (f"{m['auc']:.4f}", f"{m['logloss']:.4f}", f"{m['accuracy']:.4f}")
            table.add_row(split, *cells, f"{m['rows']:,}", *("",) * len(extra))
    console.print(table)
    if trained:
        console.print(
            f"{result['steps']:,} steps on {result['device']}"
            + (f" in {result['precision']}" if result.get("precision") else "")
            + f"; stopped: {result['stopped']}"
        )
    syncs = result.get("syncs_per_step")
    if syncs:
        ops = ", ".join(f"{op} {n:,}" for op, n in syncs["by_op"].items())
        console.print(
            f"device-to-host syncs per training step: {syncs['mean']:g} (at most "
            f"{syncs['max']}; over {syncs['steps']:,} steps: {ops})"
        )
    emb = result.get("embedding")
    if emb:
        console.print(
            f"embedding {emb['name']}: {emb['num_features']} feature vectors, "
            f"{emb['param_bytes'] / 2**20:,.2f} MiB of parameters, "
            f"{emb['flops_per_sample']:,} FLOPs per sample ({emb.get('flops_per_lookup', 0):,} "
            f"per lookup)"
            + (
                f"; lookup {emb['lookup_ms']:.3f} ms per batch of {emb['lookup_batch']:,}"
                if "lookup_ms" in emb
                else ""
            )
        )
    placement = result.get("placement")
    if placement:
        shown = {k: v for k, v in placement.items() if k != "schedule" and not isinstance(v, list)}
        parts = [f"{k} {_fmt(k, v)}" for k, v in shown.items()]
        console.print(f"schedule {placement['schedule']}: " + ", ".join(parts))
    split = result.get("time_split_s")
    if split:
        console.print("time split (s): " + ", ".join(f"{k} {v:.2f}" for k, v in split.items()))


def _fmt(key: str, value) -> str:
    if key.endswith("_bytes"):
        return f"{value / 2**20:,.1f} MiB"
    if key.endswith("_share"):
        return f"{value:.1%}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_representations(results: dict[str, dict], title: str = "representations") -> None:
    """One row per representation: validation and test AUC / accuracy, size, training speed."""
    table = Table(title=title)
    cols = ("representation", "val AUC", "val accuracy", "test AUC", "parameters", "samples/s")
    for col in cols:
        table.add_column(col, justify="right")
    for name, r in results.items():
        val, test = r.get("val") or {}, r.get("test") or {}
        size = (r.get("embedding") or {}).get("param_bytes")
        table.add_row(
            name,
            f"{val['auc']:.4f}" if val else "",
            f"{val['accuracy']:.4f}" if val else "",
            f"{test['auc']:.4f}" if test else "",
            f"{size / 2**20:,.1f} MiB" if size else "",
            f"{r['samples_per_s']:,.0f}" if r.get("samples_per_s") else "",
        )
    console.print(table)
