"""Multi-hot lookups shared by the row parts (TableEmbedding, RoutedEmbedding): the global row
of every id of sample-major bags, and the pooling of the looked-up rows per bag."""

from __future__ import annotations

from collections.abc import Callable

import torch

from hotrec.types import Bags


def bag_rows(bags: Bags, offsets: torch.Tensor) -> torch.Tensor:
    """Global rows [L] of every id of sample-major bags (host), `offsets` [T] each table's
    first row in the fused row space."""
    return bags.values + offsets[bags.tables()]


def pool_bags(
    rows: torch.Tensor,
    bags: Bags,
    mean_tables: list[bool],
    upload: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Looked-up rows [L, D] of sample-major bags -> [B, T, D]: each bag's sum, divided by
    its length for the `mean_tables`; an empty bag is zeros. `upload` moves host index
    tensors to where `rows` are."""
    batch, tables = bags.lengths.shape
    lengths = bags.lengths.reshape(-1)  # [B*T]
    bag = torch.arange(batch * tables).repeat_interleave(lengths)  # [L] the bag of each row
    bag = bag if rows.device == bag.device else upload(bag)
    index = bag.unsqueeze(1).expand(-1, rows.shape[1])  # [L, D]: scatter_add beats index_add
    pooled = rows.new_zeros((batch * tables, rows.shape[1])).scatter_add(0, index, rows)
    if any(mean_tables):
        mean = torch.as_tensor(mean_tables).repeat(batch)  # [B*T]
        divisor = torch.where(mean, lengths.clamp(min=1), 1).to(rows.dtype).unsqueeze(1)
        pooled = pooled / (divisor if rows.device == divisor.device else upload(divisor))
    return pooled.view(batch, tables, rows.shape[1])
