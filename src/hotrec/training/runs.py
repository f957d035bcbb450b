"""A run directory's life: start a run (resolved config written, old files removed) or resume
one from its config and checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hotrec.config import RunConfig, config_from_dict
from hotrec.data.format import open_dataset
from hotrec.distributed.checkpoints import shard_root
from hotrec.distributed.group import env_part
from hotrec.errors import HotrecError
from hotrec.fileio import write_json_atomic
from hotrec.training import runlog
from hotrec.training.checkpoint import load_checkpoint
from hotrec.training.schedules import check_schedule, order_options
from hotrec.training.trainer import Trainer


def start_run(cfg: RunConfig, run_dir: Path, overwrite: bool = False) -> Trainer:
    """A new run directory with the resolved config (files of an overwritten run removed)."""
    run_dir = Path(run_dir)
    check_schedule(cfg.placement)
    if (run_dir / runlog.CHECKPOINT).exists() and not overwrite:
        raise HotrecError(
            f"{run_dir} already holds a run: use --resume to continue it or --overwrite"
        )
    trainer = Trainer(cfg, run_dir, open_dataset(cfg.data.path))  # fails before any write
    if trainer.dist.main:  # several ranks: the first one writes the run directory
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in (runlog.CHECKPOINT, runlog.BEST, runlog.RESULT, runlog.METRICS):
            (run_dir / name).unlink(missing_ok=True)
            shutil.rmtree(shard_root(run_dir / name), ignore_errors=True)
        write_json_atomic(run_dir / runlog.CONFIG, cfg.to_dict())
    trainer.dist.barrier()
    return trainer


def _check_same_order(saved: RunConfig, new: RunConfig) -> None:
    """A run stopped mid-epoch resumes at a position in its batch order; options that change
    the order would train some samples twice and skip others in that epoch."""
    for section, key in order_options(saved.placement.schedule):
        old, value = getattr(getattr(saved, section), key), getattr(getattr(new, section), key)
        if old != value:
            raise HotrecError(
                f"cannot change {section}.{key} ({old!r} -> {value!r}) when resuming in the "
                "middle of an epoch: it changes which samples the rest of the epoch holds"
            )


def resume_run(
    run_dir: Path,
    overrides: dict | None = None,
    save_config: bool = True,
    checkpoint: str = runlog.CHECKPOINT,
) -> Trainer:
    """Reopen a run from its config.json and checkpoint (`checkpoint`: runlog.BEST for the
    best validation's); `overrides` may change options.

    The config file is rewritten (with the overrides) only after the checkpoint was restored
    into the model they describe, and never when save_config is False (evaluation)."""
    run_dir = Path(run_dir)
    config_path = run_dir / runlog.CONFIG
    if not config_path.is_file():
        raise HotrecError(f"{run_dir} is not a run directory (no {runlog.CONFIG})")
    try:
        raw = json.loads(config_path.read_text())
    except json.JSONDecodeError as e:
        raise HotrecError(f"{config_path} is not valid JSON: {e}") from None
    saved = config_from_dict(raw)
    for section, values in (overrides or {}).items():
        raw.setdefault(section, {}).update(values)
    cfg = config_from_dict(raw)
    check_schedule(cfg.placement)
    ckpt = load_checkpoint(run_dir / checkpoint, env_part())  # several ranks: each its own rows
    if ckpt["state"]["batch"]:
        _check_same_order(saved, cfg)
    trainer = Trainer(cfg, run_dir)
    trainer.restore(ckpt)
    if save_config and trainer.dist.main:
        write_json_atomic(config_path, cfg.to_dict())
    return trainer
