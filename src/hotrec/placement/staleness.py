"""Slipstream's staleness detector (Maboud et al., 2024), vectorized.

Two snapshots of the hot rows, taken before and after a warm-up window of training, give each
row's change (L-infinity norm of the difference). A row is stale when its change is below a
threshold T; an input is skippable when at least `alpha` of its lookups are stale rows. T is
found by bisection in [0, max_threshold] so that the skippable share of a sample of upcoming
hot inputs lands within target_share +- tolerance; when no T does, nothing is skipped.
"""

from __future__ import annotations

import torch


class StalenessDetector:
    """fit(before [N, D], after [N, D], sample_slots [S, T]) sets change_ [N], threshold_
    (float, or None when no threshold reaches the target), stale_ (bool [N]), skip_share_
    (skippable share of the sample at threshold_) and iterations_."""

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
        self.threshold_, self.iterations_ = self._bisect(sample_slots)
        self.stale_ = (
            self.change_ < self.threshold_
            if self.threshold_ is not None
            else torch.zeros_like(self.change_, dtype=torch.bool)
        )
        self.skip_share_ = self._share(sample_slots, self.threshold_)
        return self

    def _needed(self, slots: torch.Tensor) -> torch.Tensor:
        """Stale lookups [S] that make each input skippable: all of its lookups, or alpha of
        them (-1 in `slots` pads a multi-hot input's row: not a lookup)."""
        lookups = (slots >= 0).sum(dim=1)
        return lookups if self.alpha is None else lookups.clamp(max=self.alpha)

    def _stale_lookups(self, stale: torch.Tensor, slots: torch.Tensor) -> torch.Tensor:
        """Stale lookups [S] of each input of `slots` [S, W], given stale per slot."""
        return (stale[slots.clamp(min=0)] & (slots >= 0)).sum(dim=1)

    def _share(self, slots: torch.Tensor, threshold: float | None) -> float:
        """Skippable share of inputs `slots` [S, T] (all hot) at `threshold`."""
        if threshold is None or slots.shape[0] == 0:
            return 0.0
        stale_lookups = self._stale_lookups(self.change_ < threshold, slots)  # [S]
        return float((stale_lookups >= self._needed(slots)).float().mean())

    def _bisect(self, slots: torch.Tensor) -> tuple[float | None, int]:
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

    def skippable(self, slots: torch.Tensor) -> torch.Tensor:
        """bool [B]: inputs (slots [B, T], all hot; -1 pads) whose stale lookups reach alpha."""
        if self.threshold_ is None:
            return torch.zeros(slots.shape[0], dtype=torch.bool)
        return self._stale_lookups(self.stale_, slots) >= self._needed(slots)
