"""The hybrid representation of MP-Rec: table vectors and DHE vectors side by side.

Full form: every feature yields its table vector and its DHE vector (F = 2T), both enter the
interaction as separate features. Select form (an embedding map, feature_map.py): each
feature uses its table, its DHE, or both; F = the number of (feature, kind) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hotrec.device import as_device
from hotrec.embeddings.deep_hash import DeepHashEmbedding
from hotrec.embeddings.keys import select_bags
from hotrec.types import Bags


class HybridEmbedding(nn.Module):
    """sparse [B, T] -> cat([table vectors of table_columns, DHE vectors of dhe_columns]).

    `rows` reads its columns through its own keys (SelectKeys, or none when it covers every
    column in order) and is always called as `self.rows(...)`, so a placement schedule may
    replace it; `dhe` reads sparse[:, dhe_columns]. Either part may be None.
    """

    name = "hybrid"

    def __init__(
        self,
        rows: nn.Module | None,
        dhe: DeepHashEmbedding | None,
        table_columns: Sequence[int],
        dhe_columns: Sequence[int],
    ) -> None:
        super().__init__()
        self.rows = rows
        self.dhe = dhe
        self.table_columns = list(table_columns)
        self.register_buffer("dhe_columns", torch.as_tensor(list(dhe_columns), dtype=torch.int64))

    @property
    def num_features(self) -> int:
        return len(self.table_columns) + self.dhe_columns.numel()

    @property
    def num_inputs(self) -> int:
        """Sparse features read (each yields one or two of the num_features vectors)."""
        return len(set(self.table_columns) | set(self.dhe_columns.tolist()))

    def forward(self, sparse: torch.Tensor, bags: Bags | None = None) -> torch.Tensor:
        """Multi-hot: each part pools the bags of its own features."""
        if bags is not None:
            parts = [] if self.rows is None else [self.rows(sparse, bags)]
            if self.dhe is not None:
                parts.append(self.dhe(sparse, select_bags(bags, self.dhe_columns.cpu())))
            return torch.cat(parts, dim=1)  # [B, F, D]
        parts = []
        if self.rows is not None:
            parts.append(self.rows(sparse))  # [B, K_table, D]
        if self.dhe is not None:
            columns = self.dhe_columns
            if columns.device != sparse.device:  # placed: the copy made in device memory
                columns = self._placed_columns
            ids = sparse.index_select(1, columns)  # [B, K_dhe]
            parts.append(self.dhe(ids))  # [B, K_dhe, D]
        return torch.cat(parts, dim=1)  # [B, F, D]

    def place(self, device) -> None:
        """Rows stay on host (their lookups go to `device`); the DHE moves to `device`."""
        if self.rows is not None:
            self.rows.place(device)
        if self.dhe is not None:
            self.dhe.place(device)
            self._placed_columns = as_device(device).upload(self.dhe_columns)

    def begin_step(self):
        return self.rows.begin_step() if self.rows is not None else None

    def step(self) -> None:
        if self.rows is not None:
            self.rows.step()

    def zero_grad_pending(self) -> None:
        if self.rows is not None:
            self.rows.zero_grad_pending()

    def param_bytes(self) -> int:
        total = self.dhe.param_bytes() if self.dhe is not None else 0
        if self.rows is not None:
            weight = self.rows.store.weight
            total += weight.numel() * weight.element_size()
        return total

    def flops_per_sample(self) -> int:
        return self.dhe.flops_per_sample() if self.dhe is not None else 0

    def build_cache(self, popular: Sequence[np.ndarray | torch.Tensor]):
        """MP-Cache for the DHE part from popular ids per feature of the dataset (all T)."""
        if self.dhe is None:
            return None
        return self.dhe.build_cache([popular[c] for c in self.dhe_columns.tolist()])
