"""One optimizer step: forward over one or more micro-batches, BCE, backward, dense + row updates."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from hotrec.errors import HotrecError
from hotrec.models.dropout import MiniBatchDropout, plan_dropout
from hotrec.types import Batch

if TYPE_CHECKING:
    from hotrec.training.context import StepContext

PRECISIONS = ("fp32", "bf16")  # what runs; "auto" picks one of them (resolve_precision)
PAD_MULTIPLE = 64  # bf16 on the CPU: a forward's rows rounded up to a multiple of this


class NonFiniteLoss(HotrecError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def autocast(device, precision: str):
    """Mixed precision for the network when precision == "bf16" (AMX / tensor cores);
    `device` is a Device or a torch device."""
    if precision not in PRECISIONS:
        raise HotrecError(f"unknown precision {precision!r}: use {' or '.join(PRECISIONS)}")
    kind = device.autocast_type() if hasattr(device, "autocast_type") else device.type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=precision == "bf16")


def resolve_precision(asked: str, device) -> tuple[str, str]:
    """(the precision to run, why): `asked` itself, or for "auto" bf16 where `device` (a
    Device) computes it natively, else fp32."""
    if asked != "auto":
        autocast(device, asked)  # validates it
        return asked, "asked for"
    native = device.native_bf16()
    if native:
        return "bf16", f"auto: {native}"
    return "fp32", f"auto: no native bf16 on {device}"


def padding_multiple(model, device, precision: str, asked: int = -1) -> int:
    """`asked` when >= 0; auto (-1): PAD_MULTIPLE where a forward of a new batch size is slow
    (bf16 on the CPU: oneDNN builds kernels for every new size, 1.2-1.8x the epoch with
    Slipstream's narrowed batches), else 0. Never with an active dropout, whose mask a
    padded forward would draw for more rows than the mini-batch has."""
    if asked < 0 and (precision != "bf16" or not device.is_host):
        return 0
    dropout = any(isinstance(m, MiniBatchDropout) and m.p > 0 for m in model.modules())
    return 0 if dropout else (PAD_MULTIPLE if asked < 0 else asked)


def read_after_backward(device, loss: torch.Tensor, embeddings) -> float:
    """The step's one device-to-host synchronization: the host-bound row gradients' copies
    start, the loss is queued behind them, and one host wait completes both."""
    begin = getattr(embeddings, "begin_step", None)
    if begin is not None:
        begin()
    host_loss, ready = device.scalars.copy(loss.detach().float().reshape(1))
    device.host_wait(ready)
    return float(host_loss[0])


def batch_to_device(device, batch: Batch) -> Batch:
    """A host batch in device memory: asynchronous copies from pinned staging memory, which
    later work on the current stream waits for (no host wait)."""
    if device.is_host:
        return batch
    return Batch(
        device.upload(batch.dense),
        device.upload(batch.sparse),
        device.upload(batch.label),
        batch.bags,  # read on the host, where the rows are gathered
    )


def select(batch: Batch, mask: torch.Tensor) -> Batch:
    """The rows of `batch` where mask is true, in order (with their bags)."""
    bags = None if batch.bags is None else batch.bags.select(mask)
    return Batch(batch.dense[mask], batch.sparse[mask], batch.label[mask], bags)


def train_step(
    ctx: StepContext, micro_batches: list[Batch], positions: list[torch.Tensor] | None = None
) -> float:
    """One optimizer step over micro-batches of one mini-batch.

    The loss is the mean BCE over all their samples (sum / total), so splitting a mini-batch
    into micro-batches does not change the gradient; `positions` (host int64, each
    micro-batch's samples' positions in the mini-batch; default: consecutive) keep every
    sample's dropout mask as the unsplit batch would draw it. Raises NonFiniteLoss before any
    update.
    """
    model, timer, step_number = ctx.model, ctx.timer, ctx.step + 1
    network = ctx.network or model
    total = sum(len(b) for b in micro_batches)
    denominator = total  # several ranks: the global batch, so each rank's share of the loss
    if ctx.dist.active:  # gives its share of the one-process gradient (distributed/training)
        denominator = int(ctx.dist.all_sum(torch.tensor([total]))[0])
    ctx.global_samples = denominator
    if len(micro_batches) > 1:
        if positions is None:
            starts = [0, *itertools.accumulate(len(b) for b in micro_batches)]
            positions = [torch.arange(a, b) for a, b in itertools.pairwise(starts)]
        plan_dropout(model, total, [ctx.device.upload(p) for p in positions])
    with timer.enclosing("mlp"):
        losses = []
        mean = len(micro_batches) == 1 and denominator == total
        pad = ctx.pad_multiple
        for b in micro_batches:
            rows = -(-len(b) // pad) * pad if pad else 0  # 0: as it comes
            with autocast(ctx.device, ctx.precision):
                logits = network(b.dense, b.sparse, b.bags, pad_to=rows)
            reduction = "mean" if mean else "sum"
            losses.append(
                F.binary_cross_entropy_with_logits(logits.float(), b.label, reduction=reduction)
            )
        loss = losses[0] if mean else torch.stack(losses).sum() / denominator
        ctx.dense_opt.zero_grad(set_to_none=True)
        loss.backward()
    value = read_after_backward(ctx.device, loss, model.embeddings)
    if ctx.dist.active:  # every rank's share summed: the global batch's mean loss
        value = float(ctx.dist.all_sum(torch.tensor([value], dtype=torch.float64))[0])
    if not math.isfinite(value):  # nothing was updated yet: the step is dropped whole
        model.embeddings.zero_grad_pending()
        ctx.dense_opt.zero_grad(set_to_none=True)
        raise NonFiniteLoss(f"loss became {value} at step {step_number}")
    with timer.section("optimizer"):
        ctx.dense_opt.step()
        model.embeddings.step()
    return value
