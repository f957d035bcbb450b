"""The row part of a representation: the module whose rows placement schedules manage.

A plain table is its own row part; representations built from rows and other parts (qr,
hybrid) hold theirs as `.rows`; DHE has none. Schedules find, replace and key the row part
through these functions, so they never depend on which representation they place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from hotrec.embeddings.keys import key_bags, keys_of
from hotrec.types import Bags


def row_part(embeddings: nn.Module) -> nn.Module | None:
    """The module holding `store` rows (TableEmbedding or a routed one), or None."""
    if hasattr(embeddings, "store"):
        return embeddings
    return getattr(embeddings, "rows", None)


def set_row_part(model: nn.Module, new: nn.Module) -> None:
    """Replace the model's row part by `new` (e.g. a routed embedding over the same store)."""
    if hasattr(model.embeddings, "store"):
        model.embeddings = new
    else:
        model.embeddings.rows = new


def numpy_keys(part: nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """ids [n, T] (numpy) -> row keys [n, K] of `part`, for offline passes over memmaps."""
    keys = getattr(part, "keys", None)

    def apply(ids: np.ndarray) -> np.ndarray:
        if keys is None:
            return ids
        with torch.no_grad():
            return keys_of(keys, torch.from_numpy(np.asarray(ids, np.int64))).numpy()

    return apply


def numpy_bag_keys(
    part: nn.Module,
) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Multi-hot: (ids [M], lengths [n, T]) of sample-major bags (numpy) -> the key bags of
    `part`'s K virtual tables (keys [M'], lengths [n, K]), for offline passes."""
    keys = getattr(part, "keys", None)

    def apply(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if keys is None:
            return ids, lengths
        bags = Bags(torch.from_numpy(np.asarray(ids, np.int64)), torch.from_numpy(lengths))
        with torch.no_grad():
            keyed = key_bags(keys, bags)
        return keyed.values.numpy(), keyed.lengths.numpy()

    return apply
