"""Evaluation of a model over a loader: AUC, log loss and accuracy."""

from __future__ import annotations

import torch

from hotrec.data.loader import BatchLoader
from hotrec.device import Device, as_device
from hotrec.models.dlrm import DLRM
from hotrec.training.metrics import binary_metrics
from hotrec.training.steps import autocast


@torch.no_grad()
def evaluate(
    model: DLRM, loader: BatchLoader, device: Device | torch.device, precision: str = "fp32"
) -> dict[str, float]:
    """AUC / log loss / accuracy of `model` over every batch of `loader`."""
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
    if not logits:
        return binary_metrics(torch.zeros(0), torch.zeros(0))
    return binary_metrics(torch.cat(logits), torch.cat(labels))
