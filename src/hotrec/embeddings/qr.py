"""Quotient-remainder compositional embedding (Shi et al., KDD 2020): the memory-light table.

Feature t with n_t ids gets two small tables, ceil(n_t / m_t) quotient rows and m_t
remainder rows (keys.qr_tables); id x reads quotient row x // m_t and remainder row x % m_t
and its vector is their elementwise product. Both tables are ordinary rows of a fused store
read through QRKeys, so the placement schedules place them like any table.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hotrec.embeddings.keys import QRKeys, qr_tables
from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.types import Bags


class QREmbedding(nn.Module):
    """sparse [B, T] -> [B, T, D]: quotient row * remainder row per feature.

    `rows` is a table over the 2T virtual tables [q_0, r_0, q_1, r_1, ...] whose keys turn ids
    into (x // m, x % m) pairs; it is always called as `self.rows(...)` so a placement
    schedule may replace it by a routed table with the same forward contract.
    """

    name = "qr"

    def __init__(self, rows: nn.Module) -> None:
        super().__init__()
        self.rows = rows

    @property
    def num_features(self) -> int:
        return self.rows.num_features // 2

    def forward(self, sparse: torch.Tensor, bags: Bags | None = None) -> torch.Tensor:
        """Multi-hot: the quotient bag and the remainder bag of each feature are pooled, then
        multiplied (the DLRM reference's QREmbeddingBag does the same)."""
        v = self.rows(sparse) if bags is None else self.rows(sparse, bags)  # [B, 2T, D]
        pairs = v.view(v.shape[0], -1, 2, v.shape[2])  # [B, T, 2, D]
        return pairs[:, :, 0] * pairs[:, :, 1]  # [B, T, D]

    def place(self, device) -> None:
        self.rows.place(device)

    def begin_step(self):
        return self.rows.begin_step()

    def step(self) -> None:
        self.rows.step()

    def zero_grad_pending(self) -> None:
        self.rows.zero_grad_pending()

    def param_bytes(self) -> int:
        weight = self.rows.store.weight
        return weight.numel() * weight.element_size()

    def flops_per_sample(self) -> int:
        """One multiply per element of each feature's vector (lookups are free)."""
        return self.num_features * self.rows.store.dim


def build_qr(
    table_rows: list[int],
    dim: int,
    collisions: int,
    optimizer: str = "sgd",
    lr: float = 0.1,
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
    mean_tables: list[bool] | None = None,
) -> QREmbedding:
    """A QR embedding over all T features, about `collisions` ids per remainder row;
    `mean_tables`: the features whose bags are mean-pooled (both of their virtual tables)."""
    divisors, rows = qr_tables(table_rows, collisions)
    store = EmbeddingStore(rows, dim, optimizer, lr, eps, generator)
    init_qr_rows(store, generator)
    offsets = torch.as_tensor([0, *rows[:-1]], dtype=torch.int64).cumsum(0)
    keys = QRKeys(list(range(len(table_rows))), divisors)
    mean = [bool(m) for m in mean_tables for _ in range(2)] if mean_tables else None
    return QREmbedding(TableEmbedding(store, offsets, keys, mean))


def init_qr_rows(store: EmbeddingStore, generator: torch.Generator | None = None) -> None:
    """Quotient rows 1 + U(-1/sqrt(n_q), 1/sqrt(n_q)); remainder rows keep the table init.

    Why: with the DLRM init U(+-1/sqrt(n)) on both tables the product is ~1/(sqrt(n_q n_r)),
    far smaller than a table row's ~1/sqrt(n), and the gradient of each factor is scaled by
    the other, tiny factor, so training barely starts. Quotient rows near 1 make every
    product start as its remainder row (a plain table's scale and gradient), and the small
    noise lets ids that share a remainder row differ from the first step on.
    """
    start = 0
    with torch.no_grad():
        for t, n in enumerate(store.table_rows):
            if t % 2 == 0:  # quotient table of feature t // 2
                bound = 1.0 / math.sqrt(n)
                block = store.weight[start : start + n]
                block.uniform_(-bound, bound, generator=generator).add_(1.0)
            start += n
