"""Feature interactions: (dense vector [B, D], feature vectors [B, F, D]) -> [B, out_features]."""

from __future__ import annotations

import torch
from torch import nn

from hotrec.models.attention import autoint_attention, masked_transformer
from hotrec.models.cross import CrossInteraction

INTERACTIONS = ("dot", "cat", "cross", "attention", "masked_transformer")


class DotInteraction(nn.Module):
    """DLRM: pairwise dot products of all F+1 vectors (self-pairs excluded), plus the dense vector."""

    def __init__(self, num_features: int, dim: int) -> None:
        super().__init__()
        n = num_features + 1
        i, j = torch.tril_indices(n, n, offset=-1)
        self.register_buffer("pairs", i * n + j)  # flat indices of the strict lower triangle
        self.out_features = dim + self.pairs.shape[0]

    def forward(self, dense: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        vectors = torch.cat([dense.unsqueeze(1), features], dim=1)  # [B, F+1, D]
        gram = torch.bmm(vectors, vectors.transpose(1, 2))  # [B, F+1, F+1]
        pairs = gram.flatten(1).index_select(1, self.pairs)  # [B, (F+1)F/2]
        return torch.cat([dense, pairs], dim=1)


class CatInteraction(nn.Module):
    """Concatenate the dense vector and all feature vectors."""

    def __init__(self, num_features: int, dim: int) -> None:
        super().__init__()
        self.out_features = (num_features + 1) * dim

    def forward(self, dense: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([dense, features.flatten(1)], dim=1)  # [B, (F+1)D]


def make_interaction(name: str, num_features: int, dim: int, **options) -> nn.Module:
    """The named interaction over F = num_features feature vectors of width D; `options` are
    the keyword arguments of models.builders.interaction_options (each uses its own; a missing
    one takes the interaction's default)."""
    if name == "dot":
        return DotInteraction(num_features, dim)
    if name == "cat":
        return CatInteraction(num_features, dim)
    if name == "cross":
        return CrossInteraction(num_features, dim, **_pick(options, "cross_layers", "cross_rank"))
    if name == "attention":
        return autoint_attention(num_features, dim, **_pick(options, "num_heads", "num_layers"))
    if name == "masked_transformer":
        own = _pick(
            options, "num_heads", "num_layers", "ffn_dim", "dropout", "mask_thresholds", "layernorm"
        )
        return masked_transformer(num_features, dim, **own)
    raise ValueError(f"unknown interaction {name!r}; choose from {', '.join(INTERACTIONS)}")


_RENAMED = {"cross_layers": "num_layers", "cross_rank": "rank"}  # option -> argument name


def _pick(options: dict, *names: str) -> dict:
    """The given options that are present, under the interaction's argument names."""
    return {_RENAMED.get(n, n): options[n] for n in names if n in options}
