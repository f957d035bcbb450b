"""Dense optimizers for the MLPs (the embedding rows use the store's row-wise optimizers)."""

from __future__ import annotations

import torch

DENSE_OPTIMIZERS = ("sgd", "adagrad", "adam")


def build_dense_optimizer(
    params: list[torch.nn.Parameter], name: str, lr: float, eps: float = 1e-8
) -> torch.optim.Optimizer:
    """SGD, Adagrad or Adam over the MLP parameters."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, eps=eps)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, eps=eps)
    raise ValueError(f"unknown dense optimizer {name!r}; choose from {', '.join(DENSE_OPTIMIZERS)}")
