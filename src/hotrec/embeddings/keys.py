"""Row keys: which row of which table each lookup reads, computed from the raw ids [B, T].

A table representation reads K "virtual tables" per sample: the plain table reads one per
feature (K = T, the ids themselves), a subset of the features reads fewer (SelectKeys), and
the quotient-remainder representation reads two per feature (QRKeys). Placement code only
ever sees the keys, so every representation with rows can be placed the same way.

Multi-hot: `bags(b)` turns the sample-major bags of the T features into the bags of the K
virtual tables (key bags): a selected feature's bag as it is, or QR's quotient bag and
remainder bag of each feature. Key bags are pooled per virtual table, and QR multiplies the
pooled quotient and remainder vectors (as the DLRM reference's QREmbeddingBag does).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from hotrec.types import Bags


class SelectKeys(nn.Module):
    """ids [B, T] -> ids of some features [B, K], K = len(columns)."""

    def __init__(self, columns: list[int]) -> None:
        super().__init__()
        self.register_buffer("columns", torch.as_tensor(columns, dtype=torch.int64))

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        return sparse.index_select(1, self.columns.to(sparse.device))  # [B, K]

    def bags(self, bags: Bags) -> Bags:
        """The selected features' bags (K of them per sample)."""
        return select_bags(bags, self.columns)


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

    def bags(self, bags: Bags) -> Bags:
        """Each selected feature's bag twice, as its quotient bag and its remainder bag."""
        pair = select_bags(bags, self.columns.repeat_interleave(2))  # [q_0, r_0, q_1, ...]
        key = pair.tables()  # [L'] the virtual table of each id
        m = self.divisors.repeat_interleave(2)[key]
        quotient = torch.div(pair.values, m, rounding_mode="floor")
        return Bags(torch.where(key % 2 == 0, quotient, pair.values % m), pair.lengths)


def qr_tables(table_rows: list[int], collisions: int) -> tuple[list[int], list[int]]:
    """(divisors m_t, virtual table rows [q_0, r_0, q_1, r_1, ...]) so that about
    `collisions` ids share each remainder row: m_t = ceil(n_t / collisions)."""
    divisors, rows = [], []
    for n in table_rows:
        m = max(1, math.ceil(n / collisions))
        divisors.append(m)
        rows += [math.ceil(n / m), m]
    return divisors, rows


def select_bags(bags: Bags, columns: torch.Tensor) -> Bags:
    """Bags [B, T] -> bags [B, K] whose bag (b, k) is bag (b, columns[k]), sample-major."""
    batch, tables = bags.lengths.shape
    starts = (torch.cumsum(bags.lengths.reshape(-1), 0) - bags.lengths.reshape(-1)).view(
        batch, tables
    )
    lengths = bags.lengths.index_select(1, columns)  # [B, K]
    flat = lengths.reshape(-1)
    first = starts.index_select(1, columns).reshape(-1).repeat_interleave(flat)  # [L']
    before = (torch.cumsum(flat, 0) - flat).repeat_interleave(flat)  # [L'] its bag's start
    source = first + torch.arange(int(flat.sum())) - before
    return Bags(bags.values[source], lengths)


def keys_of(module: nn.Module | None, sparse: torch.Tensor) -> torch.Tensor:
    """Apply a keys module (None = the ids themselves)."""
    return sparse if module is None else module(sparse)


def key_bags(module: nn.Module | None, bags: Bags) -> Bags:
    """Apply a keys module to multi-hot bags (None = the bags themselves)."""
    return bags if module is None else module.bags(bags)
