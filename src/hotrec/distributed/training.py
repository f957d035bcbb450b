"""What a training run does differently on several ranks: the checks, the sharded stores and
the networks under DistributedDataParallel.

Semantics: a global batch of B rows is split into W contiguous parts (the loader's `part`);
the loss is the sum over the global batch divided by B, so each rank's backward yields its
share of the one-process gradient; DDP sums the dense gradients over ranks (a sum hook, not
its default mean) and the sharded stores sum the row gradients at their owners. W ranks thus
take the step one process takes (to float rounding).
"""

from __future__ import annotations

import time
import warnings

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hotrec.config import RunConfig
from hotrec.device import current_gpu
from hotrec.distributed.group import Dist
from hotrec.distributed.sharded import ShardedStore, Traffic, shard_stores
from hotrec.errors import HotrecError

SCHEDULES = ("baseline", "fae", "hotline")  # what runs on several ranks


def check_supported(cfg: RunConfig, device_name: str, d: Dist) -> None:
    """One line for what does not run on several ranks yet (before anything is written)."""
    if not d.active:
        return
    p = cfg.placement
    refusals = [
        (p.schedule not in SCHEDULES, f"--schedule {p.schedule}: use {', '.join(SCHEDULES)}"),
        (
            p.slipstream and p.schedule == "baseline",
            "--slipstream over the baseline: use it with --schedule fae or hotline, whose "
            "replicated hot rows every rank checks alike",
        ),
        (p.slipstream and p.slipstream_mode != "skip", "slipstream mode freeze: use skip"),
        (p.reprofile_every > 0, "re-profiling (placement.reprofile_every): set it to 0"),
        (
            p.schedule == "hotline" and p.lookahead > 0,
            "hotline's look-ahead gather (--lookahead): the row exchange is collective, so it "
            "runs inline; use --lookahead 0",
        ),
        (
            p.schedule == "hotline" and p.hotline_split == "split",
            "hotline's split micro-batches: use placement.hotline_split = 'fused'",
        ),
        (device_name == "emulated", "--device emulated: use cpu or cuda"),
    ]
    for refused, what in refusals:
        if refused:
            raise HotrecError(f"distributed training does not run {what}")


def share_hot_updates(d: Dist, store: ShardedStore, replica_rows: torch.Tensor, device):
    """A routed embedding's `share` on several ranks: this rank's replica updates (slot [n]
    on the host, gradient [n, D] where the replica lives, one per hot lookup) -> the updates
    every replica applies, the same on every rank and in one process's order.

    Row-wise Adagrad steps each row once with the sum of its gradients, so the sums travel:
    each lookup's gradient goes to the owner of its row (the store's layout) in batch order,
    the owner sums its rows' gradients in the global batch's order (one process's additions,
    in one process's order) and the owners' per-row sums go to every rank. SGD applies every
    lookup's gradient in turn, so for SGD each rank's lookups go to every rank, in rank
    order (summing first would round differently)."""
    per_row = 8 + store.dim * 4

    def lookups(slots: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        host = device.to_host(grads)
        all_slots, all_grads = torch.cat(d.gather_rows(slots)), torch.cat(d.gather_rows(host))
        store.traffic.hot += len(slots) * per_row * (d.world - 1)
        store.traffic.seconds += time.perf_counter() - start
        return all_slots, device.upload(all_grads)

    def row_sums(slots: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        host = device.to_host(grads)
        order, counts = store.route(replica_rows.index_select(0, slots))
        mine, _ = d.exchange(slots[order], counts)  # my rows' lookups, in global batch order
        received, _ = d.exchange(host[order], counts)
        unique, inverse = torch.unique(mine, return_inverse=True)
        sums = received.new_zeros((len(unique), received.shape[1]))
        sums.index_add_(0, inverse, received)
        all_slots, all_sums = torch.cat(d.gather_rows(unique)), torch.cat(d.gather_rows(sums))
        crossing = int(counts.sum() - counts[d.rank])
        store.traffic.hot += (crossing + len(unique) * (d.world - 1)) * per_row
        store.traffic.seconds += time.perf_counter() - start
        return all_slots, device.upload(all_sums)

    return row_sums if store.optimizer == "adagrad" else lookups


def _sum_gradients(traffic: Traffic, bucket):
    """DDP comm hook: the gradients summed over ranks (DDP's default averages them)."""
    buffer = bucket.buffer()
    traffic.dense += buffer.numel() * buffer.element_size()
    work = dist.all_reduce(buffer, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def distribute(
    model: nn.Module, device_name: str, d: Dist, traffic: Traffic, layout: str = "rows"
) -> nn.Module:
    """Shard the model's embedding stores over the ranks and wrap it in DDP; the wrapper is
    what the step calls (the model itself keeps its plain state_dict). Bytes sent to other
    ranks are counted into `traffic`."""
    shard_stores(model, d, traffic, layout)
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
