"""Checkpoints written atomically: a temporary file, fsync, then rename over the old one.

A checkpoint holds only tensors and plain values (loaded with ``weights_only=True``) and a
BLAKE2b digest of everything else in it, checked at load: a flipped bit in tensor data,
which torch's zip reader does not notice, is refused instead of trained on."""

from __future__ import annotations

from pathlib import Path

import torch

from hotrec.distributed.checkpoints import read_shards
from hotrec.errors import HotrecError
from hotrec.fileio import atomic_write
from hotrec.integrity import load_tensors, non_finite_entry, structure_digest

DIGEST_KEY = "blake2b"


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` so that `path` is always either the previous or the new complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {**state, DIGEST_KEY: structure_digest(state)}
    with atomic_write(path, "wb") as f:
        torch.save(body, f)


def load_checkpoint(path: Path, part: tuple[int, int] = (0, 1)) -> dict:
    """The checkpoint's state; one line naming the file when it is damaged or not ours.

    A checkpoint of several ranks names its store shards: with `part` = (rank, world) of the
    same world size only that rank's rows are read, else the whole stores."""
    body = load_tensors(path, "checkpoint")
    if not isinstance(body, dict) or DIGEST_KEY not in body:
        raise HotrecError(f"{path} is not a hotrec checkpoint (no checksum in it)")
    recorded = body.pop(DIGEST_KEY)
    if structure_digest(body) != recorded:
        raise HotrecError(
            f"{path} does not match its checksum: the checkpoint is corrupt; restore it from "
            "a copy or start the run again"
        )
    for key in ("model", "state"):
        if not isinstance(body.get(key), dict):
            raise HotrecError(f"{path} is not a hotrec checkpoint (no {key!r} section)")
    shards = body.pop("shards", None)
    if shards is not None:
        body["model"].update(read_shards(Path(path), shards, part))
    bad = non_finite_entry({"model": body["model"], "optimizer": body.get("dense_optimizer")})
    if bad:
        raise HotrecError(f"{path}: tensor {bad} holds NaN or infinite values; not usable")
    return body
