"""Deep Hash Embedding (Kang et al., KDD 2021; the DHE of MP-Rec): no per-row parameters.

Per feature f, k universal hash functions h_i(x) = ((a_i x + b_i) mod p) mod m turn an id
into k integer codes in [0, m); the codes are scaled to [-1, 1] (or made Gaussian by
Box-Muller) and a per-feature decoder MLP k -> hidden... -> D produces the embedding.
Memory is the decoder's, whatever the cardinality; compute is the decoder's FLOPs per lookup.

Hashing runs in int64 on every device, so CPU and GPU give the same codes: ids are reduced
mod p first (x < p < 2^31), so a_i * x < p^2 < 2^62 never overflows. Ids x and x + p would
share all their codes, so p must exceed every feature's cardinality: `prime_for` raises the
configured p (MP-Rec's 1,000,003 by default) to the next prime above the largest table.

The F decoders run together as batched matrix products over weights [F, in, out], laid out
feature-major ([F, N, ...]) so no large tensor is transposed. Each distinct (feature, id)
of a batch is hashed and decoded once (MP-Cache's deduplication, mp_cache.py; in training
too, unless BatchNorm needs the statistics of every lookup), and in eval mode the ids of a
built popularity cache skip the decoder; both compute what the decoder computes (equal to
float32 rounding: the matrix products then run on other shapes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hotrec.device import as_device
from hotrec.embeddings.bags import pool_bags
from hotrec.embeddings.mp_cache import MPCache, decode_unique
from hotrec.errors import HotrecError
from hotrec.types import Bags

DISTRIBUTIONS = ("uniform", "gaussian")
ACTIVATIONS = {"relu": nn.ReLU, "mish": nn.Mish}
MAX_PRIME = 2**31  # keeps a * (x mod p) + b inside int64
INFER_CODES = 1 << 23  # codes per decoder pass at inference (64 MiB of int64 codes)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> nn.Parameter:
    return nn.Parameter(torch.empty(shape).uniform_(-bound, bound, generator=generator))


class BatchedMLP(nn.Module):
    """F independent MLPs evaluated together: [F, N, sizes[0]] -> [F, N, sizes[-1]].

    Layer weights are [F, in, out], initialized like nn.Linear (U(+-1/sqrt(in)) for weight
    and bias). Hidden layers: optional BatchNorm (per feature and unit), then the activation;
    the last layer is linear.
    """

    def __init__(
        self,
        num_features: int,
        sizes: Sequence[int],
        activation: str = "relu",
        batchnorm: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        gen = generator or torch.Generator().manual_seed(0)
        pairs = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.weights = nn.ParameterList(
            [_uniform((num_features, i, o), 1 / math.sqrt(i), gen) for i, o in pairs]
        )
        self.biases = nn.ParameterList(
            [_uniform((num_features, 1, o), 1 / math.sqrt(i), gen) for i, o in pairs]
        )
        hidden = [o for _, o in pairs[:-1]]
        self.norms = nn.ModuleList(
            [nn.BatchNorm1d(num_features * h) for h in hidden] if batchnorm else []
        )
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(b, x, w)  # [F, N, out]
            if i < last:
                if len(self.norms):
                    x = self._norm(self.norms[i], x)
                x = self.act(x)
        return x

    @staticmethod
    def _norm(norm: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        f, n, h = x.shape
        y = norm(x.transpose(0, 1).reshape(n, f * h))  # [N, F*H]
        return y.view(n, f, h).transpose(0, 1)  # [F, N, H]

    def flops_per_row(self) -> int:
        """Multiply-adds x2 of one row through all F decoders."""
        return sum(2 * w.shape[0] * w.shape[1] * w.shape[2] for w in self.weights)


class DeepHashEmbedding(nn.Module):
    """ids [B, F] (one column per feature) -> [B, F, D] on the decoder's device."""

    name = "dhe"

    def __init__(
        self,
        num_features: int,
        dim: int,
        num_hashes: int = 1024,
        buckets: int = 1_000_000,
        prime: int = 1_000_003,
        hidden: Sequence[int] = (128,),
        distribution: str = "uniform",
        activation: str = "relu",
        batchnorm: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check(buckets, prime, distribution, activation)
        gen = torch.Generator().manual_seed(seed)
        shape = (num_features, num_hashes)
        self.register_buffer("hash_a", torch.randint(1, prime, shape, generator=gen))
        self.register_buffer("hash_b", torch.randint(0, prime, shape, generator=gen))
        self.buckets, self.prime, self.distribution = buckets, prime, distribution
        sizes = [num_hashes, *hidden, dim]
        self.decoder = BatchedMLP(num_features, sizes, activation, batchnorm, gen)
        self.dim = dim
        self.cache: MPCache | None = None
        self.mean_tables = [False] * num_features  # multi-hot: the features averaged per bag
        self.upload = None  # the device's asynchronous host-to-device copy, once placed

    @property
    def num_features(self) -> int:
        return self.hash_a.shape[0]

    @property
    def num_hashes(self) -> int:
        return self.hash_a.shape[1]

    # -- hashing -----------------------------------------------------------------------------
    def reduce(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (any int dtype and device) -> int64 x mod p on the module's device (same hashes)."""
        return torch.remainder(ids.to(self.hash_a.device, torch.int64), self.prime)

    def hash_grid(self, grid: torch.Tensor) -> torch.Tensor:
        """Feature-major ids [F, N] -> integer codes [F, N, k] in [0, m)."""
        x = self.reduce(grid).unsqueeze(2)  # [F, N, 1]
        a, b = self.hash_a.unsqueeze(1), self.hash_b.unsqueeze(1)  # [F, 1, k]
        return torch.addcmul(b, a, x).remainder_(self.prime).remainder_(self.buckets)

    def scale(self, codes: torch.Tensor) -> torch.Tensor:
        """Integer codes [..., k] -> float codes: uniform in [-1, 1], or standard normal."""
        if self.distribution == "uniform":  # c / ((m-1)/2) is exactly 2 at c = m-1
            return codes.float().div_((self.buckets - 1) / 2).sub_(1)
        return _box_muller((codes.float() + 0.5) / self.buckets)

    def hash_codes(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, F] -> integer codes [B, F, k] in [0, m)."""
        return self.hash_grid(sparse.t()).transpose(0, 1)  # [B, F, k]

    def codes(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, F] -> the decoder's input codes [B, F, k]."""
        return self.scale(self.hash_codes(sparse))

    # -- decoding ----------------------------------------------------------------------------
    def decode(self, grid: torch.Tensor) -> torch.Tensor:
        """Feature-major ids [F, N] -> embeddings [F, N, D], one decoder per feature.

        Inference (eval mode, no autograd) decodes at most INFER_CODES codes per pass, so a
        large evaluation batch does not hold all of its [F, N, k] codes at once."""
        f, n = grid.shape
        if self.training or torch.is_grad_enabled() or f * n * self.num_hashes <= INFER_CODES:
            return self.decoder(self.scale(self.hash_grid(grid)))
        rows = max(1, INFER_CODES // (f * self.num_hashes))
        return torch.cat([self.decode(part) for part in grid.split(rows, dim=1)], dim=1)

    def forward(self, sparse: torch.Tensor, bags: Bags | None = None) -> torch.Tensor:
        if bags is not None:
            return self._decode_bags(bags)
        x = self.reduce(sparse)  # [B, F]
        if self.training and len(self.decoder.norms):  # batch statistics need every lookup
            return self.decode(x.t()).transpose(0, 1)  # [B, F, D]
        if self.upload is not None and (self.training or self.cache is None):
            # ids in device memory: finding the distinct ones would make the device report a
            # size to the host (a hidden sync per step); every lookup is decoded instead
            return self.decode(x.t()).transpose(0, 1)  # [B, F, D]
        if self.training or self.cache is None:
            return self._decode_distinct(x)
        return self._decode_cached(x)

    def _decode_distinct(self, x: torch.Tensor) -> torch.Tensor:
        """ids [B, F] -> [B, F, D], each distinct (feature, id) hashed and decoded once.

        The decoder's outputs in eval mode (to float32 rounding); in training (no BatchNorm)
        the same math, with the gradients of repeated ids summed by the gather's backward
        instead of by the decoder's."""
        b, f = x.shape
        features = torch.arange(f, out=x.new_empty(f)).expand(b, f)  # [B, F] where x lives
        out = decode_unique(self.decode, features.reshape(-1), x.reshape(-1), f, self.prime)
        return out.view(b, f, -1)  # [B, F, D]

    def _decode_bags(self, bags: Bags) -> torch.Tensor:
        """Multi-hot: every id of sample-major bags decoded (each distinct (feature, id) once,
        in the order a one-hot batch would be, so a bag of one gives its one-hot vector), then
        pooled per bag (`mean_tables`: the features whose bags are averaged)."""
        if len(self.decoder.norms):
            raise HotrecError("DHE with BatchNorm does not take multi-hot tables yet")
        device = self.hash_a.device
        upload = self.upload or (lambda t: t.to(device))
        x = torch.remainder(bags.values, self.prime)  # [L] on the host, where bags are
        f, features = bags.lengths.shape[1], bags.tables()
        if self.training or self.cache is None:
            out = decode_unique(self.decode, features, x, f, self.prime, upload)  # [L, D]
        else:  # MP-Cache: cached ids from the cache, the rest decoded once each
            self.cache.refresh(self._decoder_version(), self._decode_eval)
            hit, slot = self.cache.lookup_pairs(features, x)  # host
            out = self.cache.values.view(-1, self.dim).index_select(0, upload(slot))  # [L, D]
            miss = torch.nonzero(~hit).squeeze(1)
            if miss.numel():
                decoded = decode_unique(self.decode, features[miss], x[miss], f, self.prime, upload)
                out = out.index_copy(0, upload(miss), decoded)
        return pool_bags(out, bags, self.mean_tables, upload)

    def _decode_cached(self, x: torch.Tensor) -> torch.Tensor:
        """Eval mode with MP-Cache: cached ids from the cache, the rest decoded once each."""
        b, f = x.shape
        self.cache.refresh(self._decoder_version(), self._decode_eval)
        hit, out = self.cache.lookup(x)  # [B, F], [B, F, D] (zeros where missed)
        miss = ~hit
        features = torch.arange(f, out=x.new_empty(f)).expand(b, f)  # [B, F] where x lives
        out[miss] = decode_unique(self.decode, features[miss], x[miss], f, self.prime)
        return out

    # -- MP-Cache ----------------------------------------------------------------------------
    def build_cache(self, popular: Sequence[np.ndarray | torch.Tensor]) -> MPCache:
        """Cache the decoder output of these ids (one int64 array per feature) for inference.

        The outputs are computed in eval mode with the same decoder; if the decoder changes
        later (training, load_state_dict), the cache recomputes them before its next use."""
        if len(popular) != self.num_features:
            raise HotrecError(
                f"build_cache needs one id list per feature: {self.num_features} features, "
                f"got {len(popular)}"
            )
        cache = MPCache([self.reduce(torch.as_tensor(np.asarray(p))) for p in popular])
        cache.refresh(self._decoder_version(), self._decode_eval)
        self.cache = cache
        return cache

    def clear_cache(self) -> None:
        self.cache = None

    def cache_stats(self) -> dict:
        return self.cache.stats() if self.cache is not None else {}

    def _decode_eval(self, grid: torch.Tensor) -> torch.Tensor:
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.decode(grid)
        finally:
            self.train(was_training)

    def _decoder_version(self) -> tuple:
        """Changes whenever a decoder parameter or BatchNorm statistic is written in place
        (optimizer steps, load_state_dict) or moved; writes through `.data` are not seen."""
        return tuple((t._version, t.data_ptr()) for t in self._decoder_tensors())

    def _decoder_tensors(self) -> list[torch.Tensor]:
        return [*self.decoder.parameters(), *self.decoder.buffers()]

    # -- the representation contract ---------------------------------------------------------
    def place(self, device) -> None:
        """Decoder and hash parameters into `device` memory (a Device or a torch device)."""
        device = as_device(device)
        device.place_module(self)
        self.upload = None if device.is_host else device.upload  # host index -> device

    def step(self) -> None:
        """No rows: the dense optimizer trains the decoder."""

    def zero_grad_pending(self) -> None:
        """No rows, nothing pending."""

    def param_bytes(self) -> int:
        """Decoder weights, BatchNorm statistics and hash coefficients (the MP-Cache and
        optimizer state excluded)."""
        tensors = [*self._decoder_tensors(), self.hash_a, self.hash_b]
        return sum(t.numel() * t.element_size() for t in tensors if t.dim())  # not BN's counter

    def flops_per_sample(self) -> int:
        return self.decoder.flops_per_row()


def _box_muller(u: torch.Tensor) -> torch.Tensor:
    """Uniforms in (0, 1) [..., k] -> standard normals [..., k], pairing codes (0,1), (2,3)...
    (an odd last code is paired with the first one)."""
    k = u.shape[-1]
    if k % 2:
        u = torch.cat([u, u[..., :1]], dim=-1)  # [..., k+1]
    u1, u2 = u[..., 0::2], u[..., 1::2]  # [..., ceil(k/2)] each
    radius = torch.sqrt(-2 * torch.log(u1))
    angle = 2 * math.pi * u2
    z = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=-1)
    return z.flatten(-2)[..., :k]  # [..., k]


def is_prime(n: int) -> bool:
    """Trial division (n < 2^31: at most ~23,000 odd divisors)."""
    if n < 2 or n % 2 == 0:
        return n == 2
    return all(n % d for d in range(3, math.isqrt(n) + 1, 2))


def prime_for(prime: int, max_rows: int) -> int:
    """The configured prime, or the next prime above `max_rows` when a feature has more rows
    than it (ids x and x + p would hash alike)."""
    if max_rows <= prime:
        return prime
    p = max_rows + 1
    while not is_prime(p):
        p += 1
    if p >= MAX_PRIME:
        raise HotrecError(
            f"dhe: a table of {max_rows:,} rows needs a prime above it, and primes over 2^31 "
            "overflow int64 hashing; hash the ids into fewer rows first (hotrec prepare --hash-rows)"
        )
    return p


def _check(buckets: int, prime: int, distribution: str, activation: str) -> None:
    if buckets < 2:
        raise HotrecError(f"dhe buckets must be at least 2, got {buckets}")
    if not buckets < prime < MAX_PRIME:
        raise HotrecError(
            f"dhe prime must lie between buckets ({buckets}) and 2^31 (int64 hashing), got {prime}"
        )
    if not is_prime(prime):
        raise HotrecError(f"dhe prime {prime} is not a prime (h(x) = ((a x + b) mod p) mod m)")
    if distribution not in DISTRIBUTIONS:
        raise HotrecError(f"dhe distribution must be one of {', '.join(DISTRIBUTIONS)}")
    if activation not in ACTIVATIONS:
        raise HotrecError(f"dhe activation must be one of {', '.join(ACTIVATIONS)}")
