"""`hotrec train`: train a DLRM on a prepared dataset, or resume an interrupted run."""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NoReturn

from hotrec.cli.report import console, print_representations, print_results
from hotrec.config import CHOICES, PRESETS, load_config, preset_for_meta
from hotrec.errors import HotrecError
from hotrec.training.lock import run_dir_lock
from hotrec.training.schedules import SCHEDULES, help_text

LOCKED_BY_LAUNCHER = (
    "HOTREC_RUN_DIR_LOCKED"  # set for the ranks of `--nproc`: their launcher holds it
)

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
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (or --resume a run)",
        description="Train a DLRM on a dataset directory. Configuration = defaults <- --preset <- "
        "shortcut flags <- --set section.key=value. The run directory gets config.json, "
        "metrics.jsonl, checkpoint.pt (written atomically) and result.json. Ctrl-C stops after "
        "the current step and saves a checkpoint; --resume RUN continues and ends with exactly "
        "the parameters of an uninterrupted run.",
    )
    p.add_argument("--data", type=Path, help="dataset directory (hotrec prepare / synth)")
    p.add_argument(
        "--preset",
        default=None,
        help=f"{' | '.join(PRESETS)} or a TOML file (default: the preset of the dataset's "
        "source, e.g. movielens for hotrec prepare movielens; the defaults for others)",
    )
    p.add_argument("--run-dir", type=Path, default=None, help="run directory (default runs/<time>)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue the run in this directory")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument(
        "--force", action="store_true",
        help="take over the run directory's lock left by a run that was killed (stale)",
    )  # fmt: skip
    p.add_argument(
        "--representations",
        metavar="LIST",
        help="train one model per representation (e.g. table,dhe,hybrid) into RUN/<name>/ and "
        "write RUN/artifact/ with all of them and their metrics, for `hotrec serve`; with "
        "--resume RUN it continues where it stopped",
    )
    d = p.add_argument_group("distributed (torch.distributed, launched by torchrun)")
    d.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train with N ranks on this machine: starts torchrun with this command (each "
        "rank reads its part of every global batch and holds 1/N of the embedding rows); "
        "several machines: torchrun --nnodes ... -m hotrec train ...",
    )
    d.add_argument(
        "--dist-backend",
        choices=("auto", "gloo", "nccl"),
        help="collective backend (auto: nccl with --device cuda, else gloo)",
    )
    d.add_argument(
        "--dist-sharding",
        choices=("rows", "tables"),
        help="where embedding rows live on the ranks: rows (default: row r on rank r mod N, "
        "every table spread evenly) or tables (whole tables on ranks, largest first: for many "
        "small tables; one large table stays on one rank)",
    )
    add_shortcuts(p)
    add_set_option(p)
    p.set_defaults(run=run)


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
        "--slipstream-alpha",
        type=int,
        help="stale lookups that make an input skippable (0 = all, the default)",
    )
    p.add_argument(
        "--reprofile-every",
        type=int,
        help="fae/hotline: re-count popularity over the last N steps and move rows in and out "
        "of the hot set (exact; 0 = off)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="bf16 = mixed-precision MLPs (faster on AMX CPUs and GPUs)",
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


def run(args: argparse.Namespace) -> int:
    from hotrec.distributed.group import env_part, env_rank, launched

    if args.nproc is not None and args.nproc < 1:
        raise HotrecError(f"--nproc must be at least 1, got {args.nproc}")
    if args.representations and (launched() or (args.nproc or 1) > 1):
        raise HotrecError("--representations trains on one process for now: drop --nproc")
    if launched() and not (args.run_dir or args.resume):
        raise HotrecError("under torchrun every rank needs the same --run-dir (or --resume RUN)")
    args.run_dir_defaulted = not (args.run_dir or args.resume)
    if args.run_dir_defaulted:
        args.run_dir = Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    # one writer per run directory: this process, or the launcher of these ranks
    locked = os.environ.get(LOCKED_BY_LAUNCHER) == "1" or (launched() and env_rank() != 0)
    with nullcontext() if locked else run_dir_lock(args.resume or args.run_dir, args.force):
        if args.nproc and args.nproc > 1 and not launched():
            os.environ[LOCKED_BY_LAUNCHER] = "1"  # the ranks inherit it
            try:
                return launch(args)
            finally:
                os.environ.pop(LOCKED_BY_LAUNCHER, None)
        code = _train(args)
    # a rank of a process group ends at once, its lock released above
    return exit_rank(code) if launched() and env_part()[1] > 1 else code


def exit_rank(code: int) -> NoReturn:
    """End a rank of a process group now that everything is written and the group is left:
    interpreter shutdown in such a process (gloo's and DDP's C++ objects, daemon threads)
    has been seen to abort a rank after a complete run (SIGABRT, "terminate called without
    an active exception"), failing it with nothing lost."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _train(args: argparse.Namespace) -> int:
    from hotrec.distributed.group import env_rank, leave

    main_rank = env_rank() == 0
    overrides = shortcut_overrides(args) + list(args.overrides)
    if args.representations:
        return run_representations(args, overrides)
    trainer = _trainer(args, overrides, main_rank)
    result = trainer.fit()
    if trainer.dist.main:
        print_results(result, title=f"hotrec train: {trainer.run_dir}")
        if result["stopped"] == "interrupted":
            by = f" by {result['stopped_by']}" if result.get("stopped_by") else ""
            console.print(
                f"stopped{by} at step {result['steps']:,}: checkpoint saved; continue with: "
                f"hotrec train --resume {trainer.run_dir}"
            )
    leave(trainer.dist)
    return 0


def launch(args: argparse.Namespace) -> int:
    """--nproc N: torchrun with N ranks of this command (distributed/launch.py)."""
    from hotrec.distributed.launch import rank_argv, run_torchrun

    run_dir = str(args.run_dir) if args.run_dir_defaulted else None
    return run_torchrun(args.nproc, rank_argv(args.argv, run_dir))


def _trainer(args: argparse.Namespace, overrides: list[str], main_rank: bool):
    """The trainer of a new run, or of the resumed one."""
    from hotrec.training.runs import resume_run, start_run

    say = console.print if main_rank else (lambda *a, **k: None)
    if args.resume:
        changes = load_config(None, overrides).to_dict()
        given = {o.split("=", 1)[0] for o in overrides}
        picked: dict = {}
        for key in given:
            section, name = key.split(".", 1)
            picked.setdefault(section, {})[name] = changes[section][name]
        if args.data:
            picked.setdefault("data", {})["path"] = str(args.data.resolve())
        trainer = resume_run(args.resume, picked)
        say(f"resuming {args.resume} at step {trainer.state.step}")
        return trainer
    if args.data is None:
        raise HotrecError("--data DIR is required (or --resume RUN)")
    preset = resolve_preset(args.preset, args.data, say)
    cfg = load_config(preset, [f"data.path={str(args.data.resolve())!r}"] + overrides)
    run_dir = args.run_dir
    trainer = start_run(cfg, run_dir, overwrite=args.overwrite)
    say(f"run directory: {run_dir}")
    return trainer


def run_representations(args: argparse.Namespace, overrides: list[str]) -> int:
    from hotrec.training.multi import parse_representations, saved_config, train_representations

    names = parse_representations(args.representations)
    if args.embedding:
        raise HotrecError(
            "--representations names the representations to train; drop --embedding "
            f"{args.embedding}"
        )
    if args.resume:
        if overrides or args.data:
            raise HotrecError(
                "--representations with --resume continues the runs as configured; change "
                "options of one run with: hotrec train --resume RUN/<name> ..."
            )
        run_dir, cfg = args.resume, saved_config(args.resume, names)
    else:
        if args.data is None:
            raise HotrecError("--data DIR is required (or --resume RUN)")
        preset = resolve_preset(args.preset, args.data)
        cfg = load_config(preset, [f"data.path={str(args.data.resolve())!r}"] + overrides)
        run_dir = args.run_dir
    out = train_representations(cfg, names, run_dir, bool(args.resume), args.overwrite)
    print_representations(out["representations"], title=f"hotrec train: {run_dir}")
    if out["stopped"] == "interrupted":
        console.print(
            f"stopped; continue with: hotrec train --representations "
            f"{args.representations} --resume {run_dir}"
        )
    return 0
