"""DCN-v2 cross network (low-rank) over the flattened [dense, features] vector."""

from __future__ import annotations

import torch
from torch import nn


class CrossLayer(nn.Module):
    """One low-rank cross layer: x_{l+1} = x0 * (U (V^T x_l) + b) + x_l."""

    def __init__(self, width: int, rank: int) -> None:
        super().__init__()
        self.down = nn.Linear(width, rank, bias=False)  # V^T
        self.up = nn.Linear(rank, width)  # U, b
        nn.init.xavier_normal_(self.down.weight)
        nn.init.xavier_normal_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.up(self.down(x)) + x  # [B, W]


class CrossInteraction(nn.Module):
    """x0 = [dense, features flattened] (width W = (F+1)D), then `num_layers` cross layers of
    rank `rank`; the output is the last x, [B, W]."""

    def __init__(self, num_features: int, dim: int, num_layers: int = 3, rank: int = 64) -> None:
        super().__init__()
        width = (num_features + 1) * dim
        self.layers = nn.ModuleList(CrossLayer(width, rank) for _ in range(num_layers))
        self.out_features = width

    def forward(self, dense: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        x0 = torch.cat([dense, features.flatten(1)], dim=1)  # [B, (F+1)D]
        x = x0
        for layer in self.layers:
            x = layer(x0, x)  # [B, (F+1)D]
        return x
