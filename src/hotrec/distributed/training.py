"""What a training run does differently on several ranks: the checks, the sharded stores and
the networks under DistributedDataParallel.

Semantics: a global batch of B rows is split into W contiguous parts (the loader's `part`);
the loss is the sum over the global batch divided by B, so each rank's backward yields its
share of the one-process gradient; DDP sums the dense gradients over ranks (a sum hook, not
its default mean) and the sharded stores sum the row gradients at their owners. W ranks thus
take the step one process takes (to float rounding).
"""

from __future__ import annotations

import warnings

import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hotrec.config import RunConfig
from hotrec.device import current_gpu
from hotrec.distributed.group import Dist
from hotrec.distributed.sharded import Traffic, shard_stores
from hotrec.errors import HotrecError


def check_supported(cfg: RunConfig, device_name: str, d: Dist) -> None:
    """One line for what does not run on several ranks yet (before anything is written)."""
    if not d.active:
        return
    p = cfg.placement
    if p.schedule != "baseline" or p.slipstream:
        what = f"--schedule {p.schedule}" + (" --slipstream" if p.slipstream else "")
        raise HotrecError(
            f"distributed training runs the baseline schedule for now, not {what}: "
            "use --schedule baseline (placement across ranks comes next)"
        )
    if device_name == "emulated":
        raise HotrecError("distributed training runs on --device cpu or cuda, not emulated")


def _sum_gradients(traffic: Traffic, bucket):
    """DDP comm hook: the gradients summed over ranks (DDP's default averages them)."""
    buffer = bucket.buffer()
    traffic.dense += buffer.numel() * buffer.element_size()
    work = dist.all_reduce(buffer, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def distribute(model: nn.Module, device_name: str, d: Dist, traffic: Traffic) -> nn.Module:
    """Shard the model's embedding stores over the ranks and wrap it in DDP; the wrapper is
    what the step calls (the model itself keeps its plain state_dict). Bytes sent to other
    ranks are counted into `traffic`."""
    shard_stores(model, d, traffic)
    ids = [current_gpu()] if device_name == "cuda" else None
    with warnings.catch_warnings():  # torch 2.13 deprecates broadcast_buffers, yet its
        # successor still syncs buffers at init, which would overwrite the rank's own shard
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated", FutureWarning)
        ddp = DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)
    ddp.register_comm_hook(traffic, _sum_gradients)
    return ddp


def traffic_report(d: Dist, traffic: Traffic, steps: int) -> dict:
    """result.json's `distributed` section: the world, and per step and rank (the mean over
    ranks) the bytes sent to other ranks by kind and the seconds of row exchanges
    (collective: every rank calls it)."""
    total = d.all_sum(traffic.as_tensor()) / d.world / max(steps, 1)
    per_step = {k: round(float(v)) for k, v in zip(Traffic.KINDS, total[:-1], strict=True)}
    return {
        "world": d.world,
        "backend": d.backend,
        "bytes_per_step": per_step,
        "exchange_s_per_step": round(float(total[-1]), 6),
    }
