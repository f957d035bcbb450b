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

    def forward(
        self, dense: torch.Tensor, sparse: torch.Tensor, bags=None, pad_to: int = 0
    ) -> torch.Tensor:
        """`bags` (types.Bags, on the host): every table's ids of a multi-hot dataset, which
        only the table representation reads (sparse then holds the one-hot tables' ids).
        `pad_to` > B: the MLPs and the interaction run on pad_to rows, zeros after the B
        inputs' own (their embeddings are looked up for the B only), and the B logits come
        back, so kernels built for a few sizes serve batches of any size."""
        n = len(dense)
        x = self.bottom_mlp(_padded(dense, pad_to))  # [B, D]
        features = self.embeddings(sparse) if bags is None else self.embeddings(sparse, bags)
        z = self.interaction(x, _padded(features, pad_to))  # [B, I]
        return self.top_mlp(z).squeeze(1)[:n]  # [B]

    def dense_parameters(self) -> list[nn.Parameter]:
        """Parameters updated by the dense optimizer (embedding rows are buffers, updated sparsely)."""
        return [p for p in self.parameters() if p.requires_grad]


def _padded(t: torch.Tensor, rows: int) -> torch.Tensor:
    """`t` with zero rows appended up to `rows` rows (itself when it has as many)."""
    if rows <= len(t):
        return t
    return torch.cat([t, t.new_zeros(rows - len(t), *t.shape[1:])])


def place_model(model: DLRM, device) -> None:
    """MLPs, interaction and dense embedding parts in `device` memory (a Device); embedding
    rows stay in host memory (the baseline placement)."""
    for name, child in model.named_children():
        if name != "embeddings":
            device.place_module(child)
    model.embeddings.place(device)
