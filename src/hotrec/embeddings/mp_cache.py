"""MP-Cache (Hsia et al., ASPLOS 2023) for deep hash embeddings at inference. Both parts give
the decoder's own outputs (the same math; float32 results may differ in the last bit, since
the decoder's matrix products then run on other shapes).

(a) `decode_unique`: decode each distinct (feature, id) of a batch once and scatter the
    results back; a batch of skewed ids holds far fewer distinct ids than lookups.
(b) `MPCache`: the decoder outputs of the most popular ids of each feature, computed once by
    the same decoder; cached ids skip the decoder. `popular_ids_from_counts` picks those ids
    from the popularity profiler's per-row counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

PAD = torch.iinfo(torch.int64).max  # fills short rows of the sorted id grid: never an id
PAIR = 1 << 31  # (feature, id) -> feature * PAIR + id: ids are reduced below 2^31

Decode = Callable[[torch.Tensor], torch.Tensor]  # feature-major ids [F, N] -> [F, N, D]


def decode_unique(
    decode: Decode,
    features: torch.Tensor,
    ids: torch.Tensor,
    num_features: int,
    bound: int,
    upload: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Embeddings of (features[i], ids[i]) pairs [N] -> [N, D], each distinct pair decoded once.

    ids must lie in [0, bound). The distinct ids of each feature are packed into a padded
    feature-major grid [F, W] (W = the most distinct ids of any feature; padding id 0) so all
    decoders run in one batched pass. With `upload`, features and ids are host tensors: the
    packing runs on the host and only the grid and the gather indices are uploaded, so the
    device never has to report a data-dependent size (no host wait)."""
    if upload is not None:
        key = features * bound + ids  # [N] on host
        unique, inverse = torch.unique(key, return_inverse=True)
        feature = torch.div(unique, bound, rounding_mode="floor")
        counts = torch.bincount(feature, minlength=num_features)
        column = torch.arange(unique.shape[0]) - (torch.cumsum(counts, 0) - counts)[feature]
        grid = torch.zeros(
            (num_features, int(counts.max()) if unique.numel() else 0), dtype=torch.int64
        )
        grid[feature, column] = unique - feature * bound
        values = decode(upload(grid))[upload(feature), upload(column)]  # [U, D] on device
        return values[upload(inverse)]  # [N, D]
    key = features * bound + ids  # [N], sorted by feature first
    unique, inverse = torch.unique(key, return_inverse=True)  # [U], [N]
    feature = torch.div(unique, bound, rounding_mode="floor")  # [U]
    counts = torch.bincount(feature, minlength=num_features)  # [F]
    starts = torch.cumsum(counts, 0) - counts  # [F]
    column = torch.arange(unique.shape[0], out=key.new_empty(unique.shape[0])) - starts[feature]
    width = int(counts.max()) if unique.numel() else 0
    grid = key.new_zeros((num_features, width), dtype=torch.int64)  # [F, W]
    grid[feature, column] = unique - feature * bound
    values = decode(grid)[feature, column]  # [U, D]
    return values[inverse]  # [N, D]


class MPCache(nn.Module):
    """Decoder outputs [F, C, D] of up to C ids per feature, kept in a sorted id grid [F, C].

    `refresh(version, decode)` (re)computes the outputs when the decoder's version changed;
    `lookup(x)` returns which lookups hit and their cached outputs, counting hits. Buffers are
    not persistent: the cache is rebuilt from popularity, never saved with the model.
    """

    def __init__(self, popular: Sequence[torch.Tensor]) -> None:
        super().__init__()
        unique = [torch.unique(p.reshape(-1).long()) for p in popular]  # sorted, per feature
        width = max([1, *(u.numel() for u in unique)])
        device = unique[0].device if unique else None
        grid = torch.full((len(unique), width), PAD, dtype=torch.int64, device=device)
        for f, u in enumerate(unique):
            grid[f, : u.numel()] = u
        self.register_buffer("ids", grid, persistent=False)  # [F, C]
        self.register_buffer("values", torch.zeros(0), persistent=False)  # [F, C, D]
        self.sizes = [u.numel() for u in unique]
        self.version: object = None
        self.lookups = self.hits = 0
        # (feature, id) keys of the cached ids, sorted, and their slots in values [F*C]: the
        # host-side lookup of multi-hot bags (lookup_pairs)
        host = grid.cpu()
        cached = host != PAD
        feature = torch.arange(len(unique)).unsqueeze(1).expand_as(host)[cached]
        self._keys = feature * PAIR + host[cached]  # sorted: feature-major, ids sorted
        self._slots = torch.arange(host.numel()).view_as(host)[cached]

    def refresh(self, version: object, decode: Decode) -> None:
        """Recompute the cached outputs with `decode` unless they belong to `version`."""
        if version == self.version:
            return
        self.values = decode(self.ids.masked_fill(self.ids == PAD, 0))  # [F, C, D]
        self.version = version

    def lookup(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [B, F] -> (hit [B, F] bool, cached outputs [B, F, D], zero where missed)."""
        xt = x.t().contiguous()  # [F, B]
        index = torch.searchsorted(self.ids, xt).clamp_(max=self.ids.shape[1] - 1)  # [F, B]
        hit = self.ids.gather(1, index) == xt  # [F, B]
        feature = torch.arange(xt.shape[0], device=xt.device).unsqueeze(1)  # [F, 1]
        values = self.values[feature, index]  # [F, B, D]
        values = torch.where(hit.unsqueeze(2), values, torch.zeros_like(values))
        self.lookups += hit.numel()
        self.hits += int(hit.sum())
        return hit.t(), values.transpose(0, 1)  # [B, F], [B, F, D]

    def lookup_pairs(
        self, features: torch.Tensor, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Host (feature, id) pairs [N] (ids reduced below 2^31) -> (hit [N] bool, slot [N]:
        the hit's row of values.view(F*C, D), 0 where missed), on the host, counting hits."""
        key = features * PAIR + ids
        if self._keys.numel() == 0:
            hit, slot = torch.zeros_like(key, dtype=torch.bool), torch.zeros_like(key)
        else:
            at = torch.searchsorted(self._keys, key).clamp_(max=self._keys.numel() - 1)
            hit = self._keys[at] == key
            slot = torch.where(hit, self._slots[at], 0)
        self.lookups += hit.numel()
        self.hits += int(hit.sum())
        return hit, slot

    def stats(self) -> dict:
        return {
            "cached_ids": sum(self.sizes),
            "lookups": self.lookups,
            "hits": self.hits,
            "hit_rate": self.hits / self.lookups if self.lookups else 0.0,
        }


def popular_ids_from_counts(
    counts: np.ndarray,
    table_offsets: Sequence[int],
    table_rows: Sequence[int],
    per_feature: int,
) -> list[np.ndarray]:
    """Per table, its `per_feature` most-counted row ids (counted at least once; ties go to
    the lower id), most popular first: the input of DeepHashEmbedding.build_cache.

    counts are per global row (PopularityProfiler.counts_); table_offsets_ / table_rows_
    split them into tables."""
    out = []
    for start, n in zip(table_offsets, table_rows, strict=True):
        c = np.asarray(counts[int(start) : int(start) + int(n)])
        seen = np.flatnonzero(c > 0)
        order = np.lexsort((seen, -c[seen]))[:per_feature]
        out.append(seen[order].astype(np.int64))
    return out
