"""The process group of a distributed run, and the few collectives hotrec uses.

torchrun starts one process per rank and sets RANK / WORLD_SIZE / MASTER_ADDR...; `from_env`
joins the group (gloo on the CPU, NCCL on a GPU, or `--dist-backend`). The embedding rows
live in host memory, so their exchanges always run on a gloo group (the default group when
the backend is gloo). One process (no torchrun) is `SINGLE`: no group, no collective.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from hotrec.device import cuda_available, use_gpu
from hotrec.errors import HotrecError

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    backend: str = ""
    host_group: object = None  # the gloo group that exchanges host tensors

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """The rank that writes the run directory and prints progress."""
        return self.rank == 0

    # -- collectives (every rank calls them in the same order) ---------------------------------
    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Host tensor summed over ranks (in place; returned)."""
        if self.active:
            dist.all_reduce(t, group=self.host_group)
        return t

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a stop request, a failure)."""
        if not self.active:
            return flag
        return bool(self.all_sum(torch.tensor([int(flag)]))[0])

    def exchange(
        self, send: torch.Tensor, counts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All-to-all of host rows: `send` [n, ...] grouped by destination rank, counts [W]
        rows for each -> (received rows grouped by source rank, counts [W] from each)."""
        if not self.active:
            return send, counts
        received = torch.empty_like(counts)
        dist.all_to_all_single(received, counts, group=self.host_group)
        out = send.new_empty((int(received.sum()), *send.shape[1:]))
        dist.all_to_all_single(
            out, send.contiguous(), received.tolist(), counts.tolist(), group=self.host_group
        )
        return out, received

    def gather_rows(self, local: torch.Tensor) -> list[torch.Tensor]:
        """Every rank's host tensor [n_r, ...] (n_r may differ), in rank order."""
        if not self.active:
            return [local]
        n = torch.tensor([local.shape[0]])
        sizes = [torch.zeros_like(n) for _ in range(self.world)]
        dist.all_gather(sizes, n, group=self.host_group)
        widest = max(int(s) for s in sizes)
        padded = local.new_zeros((widest, *local.shape[1:]))
        padded[: local.shape[0]] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded, group=self.host_group)
        return [p[: int(s)] for p, s in zip(parts, sizes, strict=True)]

    def barrier(self) -> None:
        if self.active:
            dist.barrier(group=self.host_group)


SINGLE = Dist()


def env_rank() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), before joining a group."""
    return int(os.environ.get("RANK", "0"))


def env_part() -> tuple[int, int]:
    """(rank, world size) as torchrun set them ((0, 1) outside torchrun)."""
    return env_rank(), int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Inside a process that torchrun started (WORLD_SIZE set)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def from_env(device: str, backend: str = "auto", timeout_s: float = 300.0) -> Dist:
    """Join the process group torchrun described (SINGLE outside torchrun or at world size 1)."""
    if not launched() or int(os.environ["WORLD_SIZE"]) <= 1:
        return SINGLE
    if backend not in BACKENDS:
        raise HotrecError(f"--dist-backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    if backend == "auto":
        backend = "nccl" if device == "cuda" else "gloo"
    if backend == "nccl" and device != "cuda":
        raise HotrecError("--dist-backend nccl needs --device cuda (use gloo on the CPU)")
    if not dist.is_initialized():
        timeout = timedelta(seconds=timeout_s)
        if backend == "nccl":
            use_gpu(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timeout)
    host = dist.new_group(backend="gloo") if backend == "nccl" else dist.group.WORLD
    return Dist(dist.get_rank(), dist.get_world_size(), backend, host)


def leave(d: Dist) -> None:
    """Leave the process group (at the end of a run), once every rank got here: no rank
    tears its connections down while another still has a collective under way."""
    if d.active and dist.is_initialized():
        d.barrier()
        dist.destroy_process_group()
