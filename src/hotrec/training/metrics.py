"""Evaluation metrics: AUC, log loss and accuracy (torchmetrics' implementations)."""

from __future__ import annotations

import torch
from torchmetrics.functional.classification import binary_accuracy, binary_auroc


def binary_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """AUC, log loss (mean BCE) and accuracy at 0.5 from logits [N] and 0/1 labels [N]."""
    logits = logits.detach().float().cpu()
    labels = labels.detach().float().cpu()
    if labels.numel() == 0:
        return {"auc": float("nan"), "logloss": float("nan"), "accuracy": float("nan"), "rows": 0}
    probs = torch.sigmoid(logits)
    target = labels.round().long()
    one_class = bool(target.min() == target.max())
    return {
        "auc": float("nan") if one_class else float(binary_auroc(probs, target)),
        "logloss": float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)),
        "accuracy": float(binary_accuracy(probs, target)),
        "rows": int(labels.numel()),
    }
