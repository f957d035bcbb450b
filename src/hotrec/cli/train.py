"""`hotrec train`: train a DLRM on a prepared dataset, or resume an interrupted run."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NoReturn

from hotrec.cli.report import console, print_representations, print_results
from hotrec.cli.train_options import (
    add_set_option,
    add_shortcuts,
    resolve_preset,
    shortcut_overrides,
)
from hotrec.config import PRESETS, load_config
from hotrec.errors import HotrecError
from hotrec.training.lock import run_dir_lock

LOCKED_BY_LAUNCHER = (
    "HOTREC_RUN_DIR_LOCKED"  # set for the ranks of `--nproc`: their launcher holds it
)


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
    if main_rank:
        console.print(f"precision: {trainer.precision} ({trainer.precision_why})")
        for note in trainer.notes:
            console.print(note)
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
    return stopped_code(result)


def stopped_code(result: dict) -> int:
    """128 + the signal's number for a run a signal stopped (130 Ctrl-C, 143 SIGTERM), so a
    scheduler does not take it for finished; 0 otherwise. A rank of `--nproc` ends with 0:
    its launcher reports the signal it passed on."""
    from hotrec.distributed.group import launched

    by = result.get("stopped_by")
    if result["stopped"] != "interrupted" or not by or launched():
        return 0
    return 128 + int(signal.Signals[by])


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
