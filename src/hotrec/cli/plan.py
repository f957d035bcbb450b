"""`hotrec plan`: measure this machine and the data, predict each schedule's step time."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hotrec.cli.report import console
from hotrec.cli.train_options import add_set_option, resolve_preset
from hotrec.config import PRESETS, load_config
from hotrec.errors import HotrecError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="predict which placement schedule and hot budget train fastest here",
        description="Measure, in under a minute, the host store's gather and update rates on "
        "the data's own lookups, the host-device copy rates and the network's step time on "
        "the chosen device; count the data's popularity (hot rows fitted on one sample, "
        "shares counted on another); print the predicted step time and bytes moved per step "
        "of each schedule (fae and hotline under a few hot budgets), the recommended one and "
        "the command that runs it. The model is the one `hotrec train` would build with the "
        "same --preset and --set options.",
    )
    p.add_argument("--data", type=Path, required=True, help="dataset directory")
    p.add_argument(
        "--preset",
        default=None,
        help=f"{' | '.join(PRESETS)} or a TOML file (default: the dataset's source's, as train)",
    )
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "emulated"),
        default=None,
        help="where the network runs (default auto: cuda when present, else cpu)",
    )
    p.add_argument("--batch-size", type=int, help="training mini-batch size")
    p.add_argument(
        "--budgets",
        metavar="LIST",
        help="hot budgets to predict, e.g. 16MiB,256MiB (default: the configured one, 1/64, "
        "1/16 and 1/4 of the tables, and half the device's free memory)",
    )
    p.add_argument("--json", action="store_true", help="print the plan as JSON (for scripts)")
    add_set_option(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from hotrec.data.format import open_dataset
    from hotrec.placement.planner import plan
    from hotrec.placement.popularity import parse_bytes
    from hotrec.training.plan import measure

    overrides = [f"data.path={str(args.data.resolve())!r}"]
    if args.device:
        overrides.append(f"train.device={args.device!r}")
    if args.batch_size:
        overrides.append(f"data.batch_size={args.batch_size}")
    preset = resolve_preset(args.preset, args.data, (lambda m: None) if args.json else None)
    cfg = load_config(preset, overrides + list(args.overrides))
    budgets = None
    if args.budgets:
        budgets = sorted({parse_bytes(b.strip()) for b in args.budgets.split(",") if b.strip()})
        if not budgets or min(budgets) < 1:
            raise HotrecError(f"--budgets needs positive byte sizes, got {args.budgets!r}")
    dataset = open_dataset(cfg.data.path)
    from hotrec.progress import console as progress

    say = (lambda m: None) if args.json else (lambda m: progress.print(f"[dim]{m}...[/dim]"))
    shape, rates, pops = measure(cfg, dataset, budgets, progress=say)
    result = plan(shape, rates, pops, hotline_split=cfg.placement.hotline_split != "fused")
    best = result["recommended"]
    command = recommended_command(args, best)
    if args.json:
        out = {
            "data": str(args.data),
            "shape": vars(shape) | {"weight_bytes": shape.weight_bytes},
            "rates": vars(rates),
            "popularity": [vars(p) for p in pops],
            "predictions": [p.to_dict() for p in result["predictions"]],
            "recommended": best.to_dict(),
            "command": command,
        }
        print(json.dumps(out, indent=2))
        return 0
    print_plan(shape, rates, pops, result, command)
    return 0


def recommended_command(args: argparse.Namespace, best) -> str:
    from hotrec.placement.bytesize import format_bytes

    parts = ["hotrec train", f"--data {args.data}"]
    if args.preset:
        parts.append(f"--preset {args.preset}")
    if args.device:
        parts.append(f"--device {args.device}")
    if args.batch_size:
        parts.append(f"--batch-size {args.batch_size}")
    parts.append(f"--schedule {best.schedule}")
    if best.budget_bytes:
        parts.append(f"--hot-budget {format_bytes(best.budget_bytes).replace(' ', '')}")
    parts += [f"--set {o}" for o in args.overrides]
    return " ".join(parts)


def print_plan(shape, rates, pops, result, command: str) -> None:
    from rich.table import Table

    from hotrec.placement.bytesize import format_bytes

    def ms(s: float | None) -> str:
        return "-" if s is None else f"{s * 1e3:.2f}"

    def rate(r: float | None) -> str:
        return "none (host memory)" if r is None else f"{r / 2**30:.1f} GiB/s"

    console.print(
        f"data: {shape.train_rows:,} training inputs, {shape.lookups:g} lookups each; "
        f"{shape.rows:,} rows x {shape.dim} = {format_bytes(shape.table_bytes)} with "
        f"optimizer state; batch {shape.batch_size}"
    )
    console.print(
        f"measured on {rates.device}: network {ms(rates.net_step_s)} ms/step"
        + (f" ({ms(rates.net_pass_s)} of it per pass)" if rates.net_pass_s else "")
        + "; host store "
        f"{rates.host_gather_s_per_row * 1e9:.0f} ns/row gather, "
        f"{rates.host_update_s_per_row * 1e9:.0f} ns/row update; link up "
        f"{rate(rates.h2d_bytes_per_s)}, down {rate(rates.d2h_bytes_per_s)}"
    )
    shares = {p.budget_bytes: p for p in pops}
    table = Table(title="predicted per training step")
    for col in ("schedule", "budget", "hot lookups/inputs", "ms", "vs base", "MiB to/back",
                "note"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("schedule", "note") else "right")
    base = result["predictions"][0].step_s
    for p in result["predictions"]:
        pop = shares.get(p.budget_bytes)
        note = p.note
        if pop is not None and pop.hot_rows * shape.dim * 4 < p.budget_bytes:
            note = note or "every sampled row"
        table.add_row(
            p.schedule + (" *" if p is result["recommended"] else ""),
            format_bytes(p.budget_bytes) if p.budget_bytes else "-",
            f"{pop.lookup_share:.0%}/{pop.input_share:.0%}" if pop else "-",
            ms(p.step_s),
            f"{base / p.step_s:.2f}x" if p.step_s and base else "-",
            f"{p.h2d_bytes_per_step / 2**20:.2f}/{p.d2h_bytes_per_step / 2**20:.2f}",
            note,
        )
    console.print(table)
    best = result["recommended"]
    console.print(f"recommended (*): {best.schedule}" + (
        f" with a {format_bytes(best.budget_bytes)} hot budget" if best.budget_bytes else ""))  # fmt: skip
    print(f"  {command}")  # one line, never wrapped: to copy
