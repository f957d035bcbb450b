"""Build the embedding representation a ModelConfig names (table | dhe | hybrid | qr).

Every representation maps sparse [B, T] (and a multi-hot dataset's bags) to [B, F, D]; the ones with rows keep them in a fused
store with the configured sparse optimizer, and hold them as the module itself (table) or as
`.rows` (qr, hybrid), where placement schedules find them (embeddings/parts.py).
"""

from __future__ import annotations

import torch
from torch import nn

from hotrec.config import ModelConfig, OptimConfig
from hotrec.embeddings.deep_hash import DeepHashEmbedding, prime_for
from hotrec.embeddings.feature_map import resolve_feature_map
from hotrec.embeddings.hybrid import HybridEmbedding
from hotrec.embeddings.keys import SelectKeys
from hotrec.embeddings.qr import build_qr
from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.errors import HotrecError
from hotrec.types import Schema

REPRESENTATIONS = ("table", "dhe", "hybrid", "qr")


def build_embeddings(
    schema: Schema, model: ModelConfig, optim: OptimConfig, generator: torch.Generator
) -> nn.Module:
    """sparse [B, T] -> [B, F, D] for the configured representation."""
    columns = list(range(schema.num_tables))
    if schema.has_bags and model.embedding in ("dhe", "hybrid") and model.dhe_batchnorm:
        raise HotrecError(
            "a DHE with BatchNorm does not take multi-hot (bag) tables yet; this dataset has "
            "some: leave --dhe-batchnorm off"
        )
    if model.embedding_map and model.embedding != "hybrid":
        raise HotrecError(
            f"an embedding map chooses table or dhe per feature of the hybrid; "
            f"--embedding {model.embedding} takes none (use --embedding hybrid)"
        )
    mean = [t.pooling == "mean" for t in schema.tables]
    if model.embedding == "table":
        return build_table(schema.table_rows, columns, model, optim, generator, mean)
    if model.embedding == "qr":
        return build_qr(
            schema.table_rows,
            model.embedding_dim,
            model.qr_collisions,
            optim.sparse,
            optim.sparse_lr,
            optim.eps,
            generator,
            mean,
        )
    if model.embedding == "dhe":
        dhe = build_dhe(schema.table_rows, model, generator)
        dhe.mean_tables = mean
        return dhe
    if model.embedding == "hybrid":
        return build_hybrid(schema, model, optim, generator)
    raise HotrecError(
        f"unknown embedding representation {model.embedding!r}: use {', '.join(REPRESENTATIONS)}"
    )


def build_table(
    table_rows: list[int],
    columns: list[int],
    model: ModelConfig,
    optim: OptimConfig,
    generator: torch.Generator,
    mean_tables: list[bool] | None = None,
) -> TableEmbedding:
    """A fused table over the features `columns` (keys only when not all of them in order);
    `mean_tables` (one per feature of the dataset): the features whose bags are mean-pooled."""
    rows = [table_rows[c] for c in columns]
    store = EmbeddingStore(
        rows, model.embedding_dim, optim.sparse, optim.sparse_lr, optim.eps, generator
    )
    offsets = torch.as_tensor([0, *rows[:-1]], dtype=torch.int64).cumsum(0)  # [K]
    keys = None if columns == list(range(len(table_rows))) else SelectKeys(columns)
    mean = [bool(mean_tables[c]) for c in columns] if mean_tables else None
    return TableEmbedding(store, offsets, keys, mean)


def build_dhe(rows: list[int], model: ModelConfig, generator: torch.Generator) -> DeepHashEmbedding:
    """A deep hash embedding over features of `rows` rows each, its seed drawn from
    `generator`; its prime is raised above the largest table when needed (deep_hash.py)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    return DeepHashEmbedding(
        len(rows),
        model.embedding_dim,
        num_hashes=model.dhe_hashes,
        buckets=model.dhe_buckets,
        prime=prime_for(model.dhe_prime, max(rows, default=0)),
        hidden=tuple(model.dhe_hidden),
        distribution=model.dhe_distribution,
        activation=model.dhe_activation,
        batchnorm=model.dhe_batchnorm,
        seed=seed,
    )


def build_hybrid(
    schema: Schema, model: ModelConfig, optim: OptimConfig, generator: torch.Generator
) -> HybridEmbedding:
    """Table and/or DHE per feature as the embedding map says (empty map: both for all)."""
    names = [t.name for t in schema.tables]
    kinds = resolve_feature_map(model.embedding_map, names, schema.table_rows)
    table_columns = [t for t, k in enumerate(kinds) if k in ("table", "both")]
    dhe_columns = [t for t, k in enumerate(kinds) if k in ("dhe", "both")]
    mean = [t.pooling == "mean" for t in schema.tables]
    rows = (
        build_table(schema.table_rows, table_columns, model, optim, generator, mean)
        if table_columns
        else None
    )
    dhe_rows = [schema.table_rows[t] for t in dhe_columns]
    dhe = build_dhe(dhe_rows, model, generator) if dhe_columns else None
    if dhe is not None:
        dhe.mean_tables = [mean[t] for t in dhe_columns]
    return HybridEmbedding(rows, dhe, table_columns, dhe_columns)
