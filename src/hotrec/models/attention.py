"""Self-attention over feature tokens: Ad-Rec's masked transformer and AutoInt-style attention.

Tokens are the dense vector (bottom-MLP output) followed by the F feature vectors, with no
positional encoding: [B, F+1, D]. Both interactions return the dense vector concatenated with
all output tokens flattened, [B, D + (F+1)D], for the top MLP.

Masked attention (Ad-Rec): ordinary attention probabilities P = softmax(Q K^T / sqrt(d)) are
computed first; entries with P <= tau_h (one threshold per head) get a large negative logit
and the row is normalized again. The decision is made for every sample, head and query row on
its own, and each row keeps at least its largest entry, so no row is ever fully masked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hotrec.errors import HotrecError
from hotrec.models.dropout import MiniBatchDropout


def masked_softmax(scores: torch.Tensor, thresholds: torch.Tensor | None) -> torch.Tensor:
    """Attention probabilities [B, H, Q, K] from logits `scores` [B, H, Q, K].

    thresholds [H]: keep the pairs whose ordinary probability exceeds the head's tau (and each
    row's largest entry), renormalize over those; None = plain softmax. The keep decision is a
    constant for autograd: gradients flow through the second softmax only. The decision is
    taken on float32 probabilities against float32 thresholds whatever the dtype of `scores`
    (bf16 keeps ~3 significant digits, enough to flip P > tau for tau = 0.001 or 0.005).
    """
    if thresholds is None:
        return torch.softmax(scores, dim=-1)
    kind = scores.device.type
    kind = kind if torch.amp.is_autocast_available(kind) else "cpu"  # emulated device: meta
    with torch.no_grad(), torch.autocast(kind, enabled=False):
        probs = torch.softmax(scores.float(), dim=-1)  # [B, H, Q, K] float32
        tau = thresholds.to(dtype=torch.float32).view(1, -1, 1, 1)  # a buffer, beside probs
        if tau.device != probs.device and probs.device.type != "meta":  # a caller's host tau
            tau = tau.to(probs.device)
        keep = probs > tau
        keep |= probs == probs.amax(dim=-1, keepdim=True)  # never a fully masked row
    masked = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return torch.softmax(masked, dim=-1)


class MultiHeadAttention(nn.Module):
    """Multi-head self-attention over tokens [B, N, D] -> [B, N, D]; masked when given one
    threshold per head, plain otherwise."""

    def __init__(self, dim: int, num_heads: int, thresholds: Sequence[float] | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise HotrecError(
                f"embedding_dim {dim} is not divisible by num_heads {num_heads}: "
                "every head needs the same width"
            )
        if thresholds is not None and len(thresholds) != num_heads:
            raise HotrecError(
                f"mask_thresholds needs one tau per head: {num_heads} heads, got {list(thresholds)}"
            )
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.masked = thresholds is not None
        tau = torch.tensor(list(thresholds) if thresholds is not None else [], dtype=torch.float32)
        self.register_buffer("thresholds", tau, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.num_heads, self.head_dim)  # [B, N, 3, H, d]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, N, d]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)  # [B, H, N, N]
        probs = masked_softmax(scores, self.thresholds if self.masked else None)
        heads = probs @ v  # [B, H, N, d]
        return self.out(heads.transpose(1, 2).reshape(B, N, D))  # [B, N, D]


class EncoderBlock(nn.Module):
    """Post-LayerNorm transformer block: x = LN(x + attn(x)); x = LN(x + FFN(x)), with
    FFN = Linear-Dropout-ReLU-Linear (one dropout mask per mini-batch, see dropout.py).
    layernorm=False drops both LayerNorms (the ablation)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        dropout: float,
        thresholds: Sequence[float] | None,
        layernorm: bool = True,
    ) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads, thresholds)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), MiniBatchDropout(dropout), nn.ReLU(), nn.Linear(ffn_dim, dim)
        )
        self.norm1 = nn.LayerNorm(dim) if layernorm else nn.Identity()
        self.norm2 = nn.LayerNorm(dim) if layernorm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attention(x))  # [B, N, D]
        return self.norm2(x + self.ffn(x))  # [B, N, D]


class AutoIntBlock(nn.Module):
    """AutoInt interacting layer: x = ReLU(attn(x) + W_res x), plain (unmasked) attention."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.attention = MultiHeadAttention(dim, num_heads)
        self.residual = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.attention(x) + self.residual(x))  # [B, N, D]


class TokenInteraction(nn.Module):
    """Blocks over the tokens [dense, features...]; output [dense, all tokens flattened]."""

    def __init__(self, num_features: int, dim: int, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.out_features = (num_features + 1) * dim + dim

    def forward(self, dense: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat([dense.unsqueeze(1), features], dim=1)  # [B, F+1, D]
        tokens = self.blocks(tokens)  # [B, F+1, D]
        return torch.cat([dense, tokens.flatten(1)], dim=1)  # [B, D + (F+1)D]


def masked_transformer(
    num_features: int,
    dim: int,
    num_heads: int = 2,
    num_layers: int = 1,
    ffn_dim: int = 128,
    dropout: float = 0.01,
    mask_thresholds: Sequence[float] = (0.001, 0.005),
    layernorm: bool = True,
) -> TokenInteraction:
    """Ad-Rec: num_layers masked encoder blocks (defaults: the authors' Kaggle setting)."""
    blocks = [
        EncoderBlock(dim, num_heads, ffn_dim, dropout, tuple(mask_thresholds), layernorm)
        for _ in range(num_layers)
    ]
    return TokenInteraction(num_features, dim, blocks)


def autoint_attention(
    num_features: int, dim: int, num_heads: int = 2, num_layers: int = 1
) -> TokenInteraction:
    """AutoInt-style: num_layers residual multi-head self-attention blocks, no mask."""
    blocks = [AutoIntBlock(dim, num_heads) for _ in range(num_layers)]
    return TokenInteraction(num_features, dim, blocks)
