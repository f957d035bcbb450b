"""The DLRM: embeddings + bottom MLP + feature interaction + top MLP."""

from __future__ import annotations

import torch
from torch import nn


class DLRM(nn.Module):
    """forward(dense [B, F_d], sparse [B, T]) -> logits [B]; the loss lives in the trainer."""

    def __init__(
        self,
        embeddings: nn.Module,
        bottom_mlp: nn.Module,
        interaction: nn.Module,
        top_mlp: nn.Module,
    ) -> None:
        super().__init__()
        self.embeddings = embeddings
        self.bottom_mlp = bottom_mlp
        self.interaction = interaction
        self.top_mlp = top_mlp

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor, bags=None) -> torch.Tensor:
        """`bags` (types.Bags, on the host): every table's ids of a multi-hot dataset, which
        only the table representation reads (sparse then holds the one-hot tables' ids)."""
        x = self.bottom_mlp(dense)  # [B, D]
        features = self.embeddings(sparse) if bags is None else self.embeddings(sparse, bags)
        z = self.interaction(x, features)  # [B, I]
        return self.top_mlp(z).squeeze(1)  # [B]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Parameters updated by the dense optimizer (embedding rows are buffers, updated sparsely)."""
        return [p for p in self.parameters() if p.requires_grad]


def place_model(model: DLRM, device) -> None:
    """MLPs, interaction and dense embedding parts in `device` memory (a Device); embedding
    rows stay in host memory (the baseline placement)."""
    for name, child in model.named_children():
        if name != "embeddings":
            device.place_module(child)
    model.embeddings.place(device)
