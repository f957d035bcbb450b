"""Slipstream's staleness detector (Maboud et al., 2024), vectorized.

Two snapshots of the hot rows, taken before and after a warm-up window of training, give each
row's change (L-infinity norm of the difference). A row is stale when its change is below a
threshold T; an input is skippable when at least `alpha` of its lookups are stale rows. T is
found by bisection in [0, max_threshold] so that the skippable share of a sample of upcoming
hot inputs lands within target_share +- tolerance; when no T does, nothing is skipped.
"""

from __future__ import annotations

import numpy as np
import torch

PAD = -2  # pads a multi-hot input's row of slots: not a lookup
COLD = -1  # a lookup of a row outside the watched hot set: the input is never skippable


class StalenessDetector:
    """fit(before [N, D], after [N, D], sample_slots [S, T]) sets change_ [N], threshold_
    (float, or None when no threshold reaches the target), stale_ (bool [N]), skip_share_
    (skippable share of the sample at threshold_) and iterations_.

    Inputs are rows of slots [B, W]: a slot in the hot set per lookup, COLD (-1) for a cold
    lookup, PAD (-2) where a multi-hot input has fewer lookups than the widest. Decisions run
    in numpy (a few array operations per batch: they sit on the training step's path)."""

    def __init__(
        self,
        target_share: float = 0.3,
        tolerance: float = 0.08,
        alpha: int | None = None,
        max_threshold: float = 0.1,
        max_iter: int = 25,
    ) -> None:
        self.target_share, self.tolerance, self.alpha = target_share, tolerance, alpha
        self.max_threshold, self.max_iter = max_threshold, max_iter

    def fit(
        self, before: torch.Tensor, after: torch.Tensor, sample_slots: torch.Tensor
    ) -> StalenessDetector:
        self.change_ = (after - before).abs().amax(dim=1).float()  # [N]
        sample = sample_slots.numpy()
        self.threshold_, self.iterations_ = self._bisect(sample)
        self.stale_ = (
            self.change_ < self.threshold_
            if self.threshold_ is not None
            else torch.zeros_like(self.change_, dtype=torch.bool)
        )
        self._stale_table = self._table(self.stale_)
        self.skip_share_ = self._share(sample, self.threshold_)
        return self

    @staticmethod
    def _table(stale: torch.Tensor) -> np.ndarray:
        """uint8 [N + 2] indexed by slot + 2: 0 for PAD and COLD, then 1 per stale row."""
        table = np.zeros(len(stale) + 2, dtype=np.uint8)
        table[2:] = stale.numpy()
        return table

    def _decide(self, table: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bool [S] skippable, bool [S] hot) for inputs `slots` [S, W]: an input without a
        cold lookup is skippable when its stale lookups reach alpha, or all of its lookups."""
        stale = table.take(slots + 2).sum(axis=1, dtype=np.int64)  # stale lookups per input
        hot = (slots != COLD).all(axis=1)
        padded = bool((slots == PAD).any())
        lookups = (slots != PAD).sum(axis=1) if padded else slots.shape[1]
        needed = lookups if self.alpha is None else np.minimum(lookups, self.alpha)
        return hot & (stale >= needed), hot

    def _share(self, slots: np.ndarray, threshold: float | None) -> float:
        """Skippable share of inputs `slots` [S, T] (all hot) at `threshold`."""
        if threshold is None or slots.shape[0] == 0:
            return 0.0
        skip, _ = self._decide(self._table(self.change_ < threshold), slots)
        return float(skip.mean())

    def _bisect(self, slots: np.ndarray) -> tuple[float | None, int]:
        """The skippable share grows with T: bisect until it is within tolerance of the target."""
        if self.target_share <= 0 or slots.shape[0] == 0:
            return None, 0
        lo, hi = 0.0, self.max_threshold
        if self._share(slots, hi) < self.target_share - self.tolerance:
            return None, 1  # even the largest threshold does not reach the target
        for i in range(1, self.max_iter + 1):
            mid = (lo + hi) / 2
            share = self._share(slots, mid)
            if abs(share - self.target_share) <= self.tolerance:
                return mid, i
            lo, hi = (mid, hi) if share < self.target_share else (lo, mid)
        return None, self.max_iter

    def decide(self, slots: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(bool [B] skippable inputs, number of hot inputs: those without a cold lookup) of
        inputs `slots` [B, W] (host)."""
        skip, hot = self._decide(self._stale_table, slots.numpy())
        if self.threshold_ is None:
            skip[:] = False
        return torch.from_numpy(skip), int(hot.sum())

    def skippable(self, slots: torch.Tensor) -> torch.Tensor:
        """bool [B]: inputs `slots` [B, W] without a cold lookup whose stale lookups reach
        alpha (all of their lookups by default)."""
        return self.decide(slots)[0]
