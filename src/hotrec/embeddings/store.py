"""The fused embedding store: every row of every table in one [R, D] tensor + optimizer state.

The sparse optimizers work on (rows, grads) pairs. `apply_rows` is the one function that
updates rows, used for host rows and device replicas alike, which is what keeps placement
schedules exact.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import torch
from torch import nn

SPARSE_OPTIMIZERS = ("sgd", "adagrad")


def coalesce(rows: torch.Tensor, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum gradients of duplicate rows: ([n], [n, D]) -> (unique rows [U], summed [U, D])."""
    unique, inverse = torch.unique(rows, return_inverse=True)
    summed = grads.new_zeros((unique.shape[0], grads.shape[1]))  # where grads live
    summed.index_add_(0, inverse, grads)
    return unique, summed


def apply_rows(
    weight: torch.Tensor,
    state: torch.Tensor | None,
    rows: torch.Tensor,
    grads: torch.Tensor,
    optimizer: str,
    lr: float,
    eps: float,
) -> None:
    """Update weight[rows] in place from per-lookup grads (duplicates allowed).

    sgd:     w[r] -= lr * sum_i g_i                       (duplicates summed)
    adagrad: s[r] += mean_d(G_r^2);  w[r] -= lr * G_r / (sqrt(s[r]) + eps),  G_r = sum_i g_i
             (row-wise Adagrad as in FBGEMM / MLPerf DLRM: one accumulator per row)
    """
    if optimizer == "sgd":
        # scatter_add_ with an expanded index is several times faster than index_add_ on CPU.
        index = rows.unsqueeze(1).expand(-1, weight.shape[1])  # [n, D]
        weight.scatter_add_(0, index, grads.to(weight.dtype) * -lr)
        return
    unique, summed = coalesce(rows, grads)  # [U], [U, D]
    apply_unique(weight, state, unique, summed, lr, eps)


def apply_unique(
    weight: torch.Tensor,
    state: torch.Tensor,
    unique: torch.Tensor,
    summed: torch.Tensor,
    lr: float,
    eps: float,
) -> None:
    """Row-wise Adagrad on unique rows with their summed gradients (the tail of apply_rows)."""
    acc = state.index_select(0, unique) + summed.pow(2).mean(dim=1)  # [U]
    state.index_copy_(0, unique, acc)
    step = summed / (acc.sqrt() + eps).unsqueeze(1)  # [U, D]
    weight.index_add_(0, unique, step.to(weight.dtype), alpha=-lr)


def apply_from_host_rows(
    weight: torch.Tensor,
    state: torch.Tensor | None,
    rows: torch.Tensor,
    grads: torch.Tensor,
    optimizer: str,
    lr: float,
    eps: float,
    upload: Callable[[torch.Tensor], torch.Tensor],
) -> None:
    """apply_rows for rows in device memory whose ids are known on the host: duplicates are
    coalesced on the host (no device-to-host read for `unique`), the ids uploaded without a
    wait. Bit-identical to apply_rows."""
    if optimizer == "sgd":
        apply_rows(weight, state, upload(rows), grads, optimizer, lr, eps)
        return
    unique, inverse = torch.unique(rows, return_inverse=True)  # host
    summed = grads.new_zeros((unique.shape[0], grads.shape[1]))
    summed.index_add_(0, upload(inverse), grads)
    apply_unique(weight, state, upload(unique), summed, lr, eps)


class EmbeddingStore(nn.Module):
    """Master copy of all embedding rows [R, D] and their row-wise optimizer state [R].

    Both are buffers, so they travel with the model's state_dict (checkpoints). `lock` is held
    while rows change (the host scatter), so a thread that gathers rows ahead (hotline's
    look-ahead worker) never reads a half-applied update.
    """

    def __init__(
        self,
        table_rows: list[int],
        dim: int,
        optimizer: str = "sgd",
        lr: float = 0.1,
        eps: float = 1e-8,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if optimizer not in SPARSE_OPTIMIZERS:
            raise ValueError(f"sparse optimizer must be one of {SPARSE_OPTIMIZERS}")
        self.table_rows = list(table_rows)
        self.dim, self.optimizer, self.lr, self.eps = dim, optimizer, lr, eps
        total = sum(table_rows)
        self.register_buffer("weight", torch.empty(total, dim))
        state = torch.zeros(total) if optimizer == "adagrad" else torch.zeros(0)
        self.register_buffer("opt_state", state)
        self.lock = threading.Lock()
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Uniform(-1/sqrt(n_t), 1/sqrt(n_t)) per table, as the DLRM reference initializes."""
        start = 0
        for n in self.table_rows:
            bound = 1.0 / math.sqrt(n)
            self.weight[start : start + n].uniform_(-bound, bound, generator=generator)
            start += n

    @property
    def num_rows(self) -> int:
        return self.weight.shape[0]

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """rows [n] global ids -> [n, D] (a copy)."""
        return self.weight.index_select(0, rows)

    def read_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rows [n] global ids -> (weights [n, D], Adagrad state [n] or None), copies."""
        state = None
        if self.optimizer == "adagrad":
            state = self.opt_state.index_select(0, rows)
        return self.weight.index_select(0, rows), state

    def write_rows(
        self, rows: torch.Tensor, weight: torch.Tensor, state: torch.Tensor | None
    ) -> None:
        """Overwrite rows [n] with weights [n, D] and state [n] (read_rows' inverse)."""
        self.weight.index_copy_(0, rows, weight)
        if state is not None:
            self.opt_state.index_copy_(0, rows, state)

    def update(self, rows: torch.Tensor, grads: torch.Tensor, upload=None) -> None:
        """Apply the sparse optimizer to the looked-up rows. Host store: `rows` and `grads`
        in host memory. A store in device memory: `rows` on the host, `grads` on the device,
        `upload` the device's host-to-device copy."""
        state = self.opt_state if self.optimizer == "adagrad" else None
        with self.lock:
            if upload is None:
                apply_rows(self.weight, state, rows, grads, self.optimizer, self.lr, self.eps)
            else:
                apply_from_host_rows(
                    self.weight, state, rows, grads, self.optimizer, self.lr, self.eps, upload
                )

    def nbytes(self) -> int:
        return self.weight.numel() * self.weight.element_size() + self.opt_state.numel() * 4
