"""What a representation costs: its name, feature vectors, parameter bytes and FLOPs."""

from __future__ import annotations

from torch import nn


def describe(embeddings: nn.Module) -> dict:
    """{name, num_features, param_bytes, flops_per_sample} of a representation module.

    param_bytes: weights needed to serve it (rows, decoder, hash coefficients), optimizer
    state excluded; flops_per_sample: multiply-adds x2 to produce all F vectors of one sample
    (table lookups count 0). A plain table replaced by a placement schedule's routed table
    (no methods of its own) is described from its store."""
    if hasattr(embeddings, "param_bytes"):
        size, flops = embeddings.param_bytes(), embeddings.flops_per_sample()
    else:
        weight = embeddings.store.weight
        size, flops = weight.numel() * weight.element_size(), 0
    return {
        "name": getattr(embeddings, "name", "table"),
        "num_features": int(embeddings.num_features),
        "param_bytes": int(size),
        "flops_per_sample": int(flops),
    }
