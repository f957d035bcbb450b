"""What a representation costs: its name, feature vectors, parameter bytes, FLOPs and the
latency of a lookup."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from hotrec.device import as_device


def describe(embeddings: nn.Module) -> dict:
    """{name, num_features, param_bytes, flops_per_sample, flops_per_lookup} of a
    representation module.

    param_bytes: weights needed to serve it (rows, decoder, hash coefficients), optimizer
    state excluded; flops_per_sample: multiply-adds x2 to produce all F vectors of one sample
    (table lookups count 0); flops_per_lookup: the same per sparse feature of the input. A
    plain table replaced by a placement schedule's routed table (no methods of its own) is
    described from its store."""
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
        "flops_per_lookup": int(flops) // max(1, _num_inputs(embeddings)),
    }


def _num_inputs(embeddings: nn.Module) -> int:
    """Sparse features read per sample (the hybrid yields two vectors for some of them)."""
    columns = getattr(embeddings, "num_inputs", None)
    return int(columns) if columns is not None else int(embeddings.num_features)


def lookup_ms(
    embeddings: nn.Module, sparse: torch.Tensor, repeats: int = 5, device=None, bags=None
) -> float:
    """Median milliseconds of one inference-mode forward of `sparse` [B, T] (with `bags`, the
    multi-hot ids) after one warm-up call, on the device the tensors are on (`device`: the
    Device, which waits for the work before each reading; default: the one `sparse` is on)."""
    device = as_device(device if device is not None else sparse.device)
    was_training = embeddings.training
    embeddings.eval()
    times = []
    try:
        with torch.no_grad():  # not inference_mode: emulated device tensors refuse it
            for i in range(repeats + 1):
                t = time.perf_counter()
                embeddings(sparse) if bags is None else embeddings(sparse, bags)  # [B, F, D]
                if not device.is_host:
                    device.synchronize()
                if i:
                    times.append((time.perf_counter() - t) * 1e3)
    finally:
        embeddings.train(was_training)
    return statistics.median(times)
