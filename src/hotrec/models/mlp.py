"""Multi-layer perceptron with DLRM-style initialization."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(
    in_features: int, layers: tuple[int, ...] | list[int], last_activation: bool
) -> nn.Sequential:
    """Linear+ReLU stack in -> layers[0] -> ... -> layers[-1]; ReLU after the last if asked."""
    modules: list[nn.Module] = []
    width = in_features
    for i, out in enumerate(layers):
        linear = nn.Linear(width, out)
        _init_linear(linear)
        modules.append(linear)
        if i < len(layers) - 1 or last_activation:
            modules.append(nn.ReLU())
        width = out
    return nn.Sequential(*modules)


def _init_linear(linear: nn.Linear) -> None:
    """Weights N(0, sqrt(2 / (fan_in + fan_out))), bias N(0, sqrt(1 / fan_out)) as in DLRM."""
    fan_out, fan_in = linear.weight.shape
    with torch.no_grad():
        linear.weight.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)))
        linear.bias.normal_(0.0, math.sqrt(1.0 / fan_out))
