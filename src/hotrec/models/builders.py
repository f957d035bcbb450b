"""Assemble a DLRM from a dataset schema and a model/optimizer configuration."""

from __future__ import annotations

import torch

from hotrec.config import ModelConfig, OptimConfig
from hotrec.errors import HotrecError
from hotrec.models.dlrm import DLRM
from hotrec.models.interactions import INTERACTIONS, make_interaction
from hotrec.models.mlp import mlp
from hotrec.models.representations import build_embeddings
from hotrec.types import Schema


def build_dlrm(schema: Schema, model: ModelConfig, optim: OptimConfig, seed: int = 0) -> DLRM:
    """A DLRM over a fused table store, with DLRM-reference initialization seeded by `seed`."""
    check_model_config(model)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # MLP init draws from the global generator
    embeddings = build_embeddings(schema, model, optim, gen)
    bottom = mlp(schema.num_dense, model.bottom_mlp, last_activation=True)
    interaction = make_interaction(
        model.interaction,
        embeddings.num_features,
        model.embedding_dim,
        **interaction_options(model),
    )
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


def interaction_options(model: ModelConfig) -> dict:
    """The interaction's own options, as plain arguments."""
    return {
        "num_heads": model.num_heads,
        "num_layers": model.num_layers,
        "ffn_dim": model.ffn_dim,
        "dropout": model.dropout,
        "mask_thresholds": tuple(model.mask_thresholds),
        "layernorm": model.layernorm,
        "cross_layers": model.cross_layers,
        "cross_rank": model.cross_rank,
    }
