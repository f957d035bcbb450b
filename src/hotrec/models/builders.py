"""Assemble a DLRM from a dataset schema and a model/optimizer configuration."""

from __future__ import annotations

import torch

from hotrec.config import ModelConfig, OptimConfig
from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.errors import HotrecError
from hotrec.models.dlrm import DLRM
from hotrec.models.interactions import INTERACTIONS, make_interaction
from hotrec.models.mlp import mlp
from hotrec.types import Schema


def build_dlrm(schema: Schema, model: ModelConfig, optim: OptimConfig, seed: int = 0) -> DLRM:
    """A DLRM over a fused table store, with DLRM-reference initialization seeded by `seed`."""
    check_model_config(model)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # MLP init draws from the global generator
    store = EmbeddingStore(
        schema.table_rows, model.embedding_dim, optim.sparse, optim.sparse_lr, optim.eps, gen
    )
    embeddings = TableEmbedding(store, torch.from_numpy(schema.table_offsets))
    bottom = mlp(schema.num_dense, model.bottom_mlp, last_activation=True)
    interaction = make_interaction(model.interaction, schema.num_tables, model.embedding_dim)
    top = mlp(interaction.out_features, model.top_mlp, last_activation=False)
    return DLRM(embeddings, bottom, interaction, top)


def check_model_config(model: ModelConfig) -> None:
    """One-line errors for shapes that cannot work."""
    if model.interaction not in INTERACTIONS:
        raise HotrecError(
            f"unknown interaction {model.interaction!r}: use {', '.join(INTERACTIONS)}"
        )
    if not model.bottom_mlp or model.bottom_mlp[-1] != model.embedding_dim:
        raise HotrecError(
            f"model.bottom_mlp must end with embedding_dim={model.embedding_dim}, got {list(model.bottom_mlp)}"
        )
    if not model.top_mlp or model.top_mlp[-1] != 1:
        raise HotrecError(f"model.top_mlp must end with 1 (the logit), got {list(model.top_mlp)}")
