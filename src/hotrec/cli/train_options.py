"""`hotrec train`'s options beyond the run's own: shortcut flags for common config fields,
`--set KEY=VALUE` for any field, and the preset a dataset asks for (also used by `hotrec
plan` and the benchmarks)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hotrec.cli.report import console
from hotrec.config import CHOICES, preset_for_meta
from hotrec.training.schedules import SCHEDULES, help_text

# Shortcut flags -> config fields (anything else: --set section.key=value).
SHORTCUTS = {
    "epochs": "train.epochs",
    "max_steps": "train.max_steps",
    "batch_size": "data.batch_size",
    "lr": ("optim.sparse_lr", "optim.dense_lr"),
    "interaction": "model.interaction",
    "layernorm": "model.layernorm",
    "num_heads": "model.num_heads",
    "embedding": "model.embedding",
    "embedding_map": "model.embedding_map",
    "embedding_dim": "model.embedding_dim",
    "eval_every": "train.eval_every",
    "early_stop": "train.early_stop",
    "checkpoint_every": "train.checkpoint_every",
    "device": "train.device",
    "seed": "train.seed",
    "threads": "train.threads",
    "precision": "train.precision",
    "deterministic": "train.deterministic",
    "dist_backend": "train.dist_backend",
    "dist_sharding": "train.dist_sharding",
    "schedule": "placement.schedule",
    "hot_budget": "placement.hot_budget",
    "hotset": "placement.hotset",
    "fae_run_length": "placement.fae_run_length",
    "lookahead": "placement.lookahead",
    "reprofile_every": "placement.reprofile_every",
    "slipstream": "placement.slipstream",
    "slipstream_target": "placement.slipstream_target",
    "slipstream_tolerance": "placement.slipstream_tolerance",
    "slipstream_start": "placement.slipstream_start",
    "slipstream_window": "placement.slipstream_window",
    "slipstream_sample": "placement.slipstream_sample",
    "slipstream_alpha": "placement.slipstream_alpha",
    "slipstream_mode": "placement.slipstream_mode",
    "slipstream_compact": "placement.slipstream_compact",
    "slipstream_select": "placement.slipstream_select",
}


def add_set_option(p: argparse.ArgumentParser) -> None:
    """--set section.key=value, repeatable: any config field (args.overrides)."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config field, e.g. --set model.top_mlp=[256,1]",
    )


def add_shortcuts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=int, help="passes over the training split")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in total")
    p.add_argument("--batch-size", type=int, help="training mini-batch size")
    p.add_argument("--lr", type=float, help="learning rate of embeddings and MLPs")
    p.add_argument(
        "--interaction",
        choices=CHOICES["model.interaction"],
        help="feature interaction (default dot; masked_transformer = Ad-Rec)",
    )
    p.add_argument(
        "--no-layernorm",
        dest="layernorm",
        action="store_const",
        const=False,
        help="masked_transformer without its post-LayerNorm (the ablation)",
    )
    p.add_argument("--num-heads", type=int, help="attention / masked_transformer heads")
    p.add_argument(
        "--embedding",
        choices=CHOICES["model.embedding"],
        help="embedding representation (default table; dhe = deep hash, hybrid = both, "
        "qr = quotient-remainder)",
    )
    p.add_argument(
        "--embedding-map",
        metavar="MAP",
        help="hybrid: per-feature table|dhe|both, a TOML/JSON file or a rule such as "
        "'dhe_min_rows=100000' (tables with at least that many rows use dhe, the rest table)",
    )
    p.add_argument("--embedding-dim", type=int, help="embedding width D")
    p.add_argument(
        "--eval-every",
        type=int,
        help="validate every N steps (0 = only at the end; default auto: once per epoch, 4 "
        "times per epoch above 4,000 steps); best.pt keeps the best val AUC's model",
    )
    p.add_argument(
        "--early-stop",
        type=int,
        metavar="PATIENCE",
        help="stop after PATIENCE validations without a better val AUC (default 0: off)",
    )
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "emulated"),
        help="where the MLPs run (auto: cuda when present, else cpu; emulated: the CPU made "
        "as strict as CUDA, counting device-to-host syncs per step)",
    )
    p.add_argument("--seed", type=int, help="seed of initialization and shuffling")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument(
        "--deterministic",
        action="store_const",
        const=True,
        help="deterministic kernels only (needed for bit-exact runs on a GPU; slower there)",
    )
    p.add_argument(
        "--schedule",
        choices=list(SCHEDULES),
        help=f"placement schedule, default baseline ({help_text()})",
    )
    p.add_argument("--hot-budget", help="fae/hotline: device bytes for hot rows, e.g. 256MiB")
    p.add_argument(
        "--hotset", help="fae/hotline: a hot set saved by 'hotrec profile' (else profiled)"
    )
    p.add_argument(
        "--fae-run-length",
        type=int,
        help="fae: hot batches per run, cold ones in proportion (0 = all cold, then all hot)",
    )
    p.add_argument(
        "--lookahead",
        type=int,
        help="hotline: batches a worker prepares and gathers ahead (0: inline; default -1, "
        "auto: 2 on a GPU, 0 on the CPU, where there is no copy to hide)",
    )
    over = " or ".join(name for name, e in SCHEDULES.items() if e.slipstream)
    s = p.add_argument_group(f"slipstream (over --schedule {over})")
    s.add_argument(
        "--slipstream",
        action="store_const",
        const=True,
        help="skip hot inputs whose embedding rows stopped changing",
    )
    s.add_argument(
        "--slipstream-target",
        type=float,
        metavar="D",
        help="share of hot inputs to make skippable (default 0.3)",
    )
    s.add_argument("--slipstream-tolerance", type=float, help="accepted distance from D (0.08)")
    s.add_argument(
        "--slipstream-start",
        type=float,
        metavar="S",
        help="warm-up starts after this share of the epoch's hot batches (0.2)",
    )
    s.add_argument(
        "--slipstream-window",
        type=float,
        metavar="P",
        help="warm-up length as a share of the epoch's hot batches (0.1)",
    )
    s.add_argument(
        "--slipstream-sample",
        type=float,
        metavar="I",
        help="share of the epoch's remaining batches sampled to find T (0.05)",
    )
    s.add_argument(
        "--slipstream-mode",
        choices=("skip", "freeze"),
        help="skip: no forward/backward for stale inputs (default); freeze: keep every input, "
        "stop updating stale rows, re-check them every window",
    )
    s.add_argument(
        "--slipstream-select",
        choices=("stale", "random"),
        help="skip mode: skip stale inputs (default), or, as a control, as many hot inputs "
        "chosen at random (what the staleness test adds over plain subsampling)",
    )
    s.add_argument(
        "--slipstream-alpha",
        type=int,
        help="stale lookups that make an input skippable (0 = all, the default)",
    )
    s.add_argument(
        "--slipstream-compact",
        action=argparse.BooleanOptionalAction,
        help="skip mode, one process: re-pack the kept inputs into full batches, so skipped "
        "inputs save whole steps (fewer optimizer steps: see the README for its AUC cost); "
        "--no-slipstream-compact (the default) trains what is left of each batch",
    )
    p.add_argument(
        "--reprofile-every",
        type=int,
        help="fae/hotline: re-count popularity over the last N steps and move rows in and out "
        "of the hot set (exact; 0 = off)",
    )
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        help="bf16: the MLPs and the interaction under bf16 autocast (rows, their optimizer "
        "and the loss stay fp32); auto (default): bf16 where the hardware computes it "
        "natively (CPUs with AMX or AVX512-BF16, CUDA compute capability 8.0+), else fp32",
    )


def resolve_preset(preset: str | None, data: Path, say=None) -> str | None:
    """--preset when given, else the preset of the dataset's source (said), else None."""
    if preset:
        return preset
    from hotrec.data.format import open_dataset

    chosen, source = preset_for_meta(open_dataset(data).meta)
    say = say or console.print
    if chosen:
        say(f"preset: {chosen} (the dataset's source is {source}; --preset picks another)")
    else:
        say(f"preset: none, the defaults (no preset for source {source}; --preset picks one)")
    return chosen


def shortcut_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    for flag, fields in SHORTCUTS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        for f in (fields,) if isinstance(fields, str) else fields:
            if isinstance(value, bool):
                out.append(f"{f}={str(value).lower()}")
            else:
                out.append(f"{f}={value!r}" if isinstance(value, str) else f"{f}={value}")
    return out
