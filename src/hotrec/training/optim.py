"""Dense optimizers for the MLPs (the embedding rows use the store's row-wise optimizers)."""

from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def learning_rates_scaled(dense_opt: torch.optim.Optimizer, store, factor: float):
    """Within: every learning rate (the MLPs' optimizer and the row store's, when there is
    one) times `factor`; restored to exactly what it was after. factor 1: nothing changes."""
    if factor == 1.0:
        yield
        return
    groups = [g["lr"] for g in dense_opt.param_groups]
    row_lr = None if store is None else store.lr
    for g in dense_opt.param_groups:
        g["lr"] = g["lr"] * factor
    if store is not None:
        store.lr = row_lr * factor
    try:
        yield
    finally:
        for g, lr in zip(dense_opt.param_groups, groups, strict=True):
            g["lr"] = lr
        if store is not None:
            store.lr = row_lr
