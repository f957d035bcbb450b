"""Build the embedding representation a ModelConfig names (table | dhe | hybrid | qr)."""

from __future__ import annotations

import torch
from torch import nn

from hotrec.config import ModelConfig, OptimConfig
from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.errors import HotrecError
from hotrec.types import Schema

REPRESENTATIONS = ("table", "dhe", "hybrid", "qr")


def build_embeddings(
    schema: Schema, model: ModelConfig, optim: OptimConfig, generator: torch.Generator
) -> nn.Module:
    """sparse [B, T] -> [B, F, D] for the configured representation."""
    if model.embedding == "table":
        store = EmbeddingStore(
            schema.table_rows,
            model.embedding_dim,
            optim.sparse,
            optim.sparse_lr,
            optim.eps,
            generator,
        )
        return TableEmbedding(store, torch.from_numpy(schema.table_offsets))
    raise HotrecError(
        f"unknown embedding representation {model.embedding!r}: use {', '.join(REPRESENTATIONS)}"
    )
