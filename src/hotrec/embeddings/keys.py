"""Row keys: which row of which table each lookup reads, computed from the raw ids [B, T].

A table representation reads K "virtual tables" per sample: the plain table reads one per
feature (K = T, the ids themselves), a subset of the features reads fewer (SelectKeys), and
the quotient-remainder representation reads two per feature (QRKeys). Placement code only
ever sees the keys, so every representation with rows can be placed the same way.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelectKeys(nn.Module):
    """ids [B, T] -> ids of some features [B, K], K = len(columns)."""

    def __init__(self, columns: list[int]) -> None:
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.int64))

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        return sparse.index_select(1, self.columns.to(sparse.device))  # [B, K]


class QRKeys(nn.Module):
    """ids [B, T] -> [B, 2K]: (x // m, x % m) per selected feature, interleaved.

    Feature t's two virtual tables have ceil(n_t / m_t) quotient rows and m_t remainder rows
    (Shi et al., KDD 2020); `qr_tables` computes m_t and both sizes.
    """

    def __init__(self, columns: list[int], divisors: list[int]) -> None:
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.int64))
        self.register_buffer("divisors", torch.as_tensor(divisors, dtype=torch.int64))

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        x = sparse.index_select(1, self.columns.to(sparse.device)).long()  # [B, K]
        m = self.divisors.to(sparse.device)
        pairs = torch.stack([torch.div(x, m, rounding_mode="floor"), x % m], dim=2)  # [B, K, 2]
        return pairs.flatten(1)  # [B, 2K]


def qr_tables(table_rows: list[int], collisions: int) -> tuple[list[int], list[int]]:
    """(divisors m_t, virtual table rows [q_0, r_0, q_1, r_1, ...]) so that about
    `collisions` ids share each remainder row: m_t = ceil(n_t / collisions)."""
    divisors, rows = [], []
    for n in table_rows:
        m = max(1, math.ceil(n / collisions))
        divisors.append(m)
        rows += [math.ceil(n / m), m]
    return divisors, rows


def keys_of(module: nn.Module | None, sparse: torch.Tensor) -> torch.Tensor:
    """Apply a keys module (None = the ids themselves)."""
    return sparse if module is None else module(sparse)
