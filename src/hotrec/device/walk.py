"""The tensors in an aten op's arguments or results: tensors, scalars and other leaves in
(possibly nested) lists, tuples and dicts. The emulated device walks every op's arguments
twice and its results once; these direct walks cost a fraction of torch.utils._pytree's
general one, which took most of the emulated device's time per op."""

from __future__ import annotations

import torch


def tensors_in(obj, out: list[torch.Tensor]) -> None:
    """Append every tensor in `obj` to `out`, in order."""
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            tensors_in(x, out)
    elif isinstance(obj, dict):
        for x in obj.values():
            tensors_in(x, out)


def map_tensors(fn, obj):
    """`obj` with `fn` applied to every tensor in it (containers rebuilt, types kept)."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, list):
        return [map_tensors(fn, x) for x in obj]
    if isinstance(obj, tuple):
        items = [map_tensors(fn, x) for x in obj]
        if type(obj) is tuple:
            return tuple(items)
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    return obj
