"""Evaluation of a model over a loader: AUC, log loss and accuracy; what a run reports of its
embedding representation."""

from __future__ import annotations

import torch

from hotrec.data.format import SplitArrays
from hotrec.data.loader import BatchLoader, make_batch
from hotrec.device import Device, as_device
from hotrec.distributed.group import SINGLE, Dist
from hotrec.embeddings.describe import describe, lookup_ms
from hotrec.models.dlrm import DLRM
from hotrec.training.metrics import binary_metrics
from hotrec.training.steps import autocast


@torch.no_grad()
def evaluate(
    model: DLRM,
    loader: BatchLoader,
    device: Device | torch.device,
    precision: str = "fp32",
    dist: Dist = SINGLE,
) -> dict[str, float]:
    """AUC / log loss / accuracy of `model` over every batch of `loader`; on several ranks
    (each loader holding its part of every batch), over the scores of every rank."""
    device = as_device(device)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader.epoch(0):
        with autocast(device, precision):
            out = model(device.to_device(batch.dense), device.to_device(batch.sparse), batch.bags)
        logits.append(device.to_host(out.float()))
        labels.append(batch.label)
    model.train(was_training)
    logits = torch.cat(logits) if logits else torch.zeros(0)
    labels = torch.cat(labels) if labels else torch.zeros(0)
    if dist.active:  # rank order: the same scores as one process, in another order
        logits, labels = (torch.cat(dist.gather_rows(t)) for t in (logits, labels))
    return binary_metrics(logits, labels)


def embedding_report(embeddings, split: SplitArrays, batch_size: int, device: Device) -> dict:
    """The representation's size and FLOPs, and the latency of looking up the first batch of
    `split`'s ids on `device` (median of 5 inference-mode calls)."""
    batch = make_batch(split, slice(0, min(batch_size, len(split))))
    sparse = device.to_device(batch.sparse)  # [B, T]
    ms = lookup_ms(embeddings, sparse, device=device, bags=batch.bags)
    return {**describe(embeddings), "lookup_ms": round(ms, 4), "lookup_batch": len(batch)}
