"""Checkpoints written atomically: a temporary file, fsync, then rename over the old one."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hotrec.errors import HotrecError


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` so that `path` is always either the previous or the new complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise HotrecError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a damaged file
        raise HotrecError(f"cannot read checkpoint {path}: {e}") from None
