"""slipstream: skip hot inputs whose embeddings stopped changing (Maboud et al., 2024).

A filter over fae or hotline, per epoch: after `start` x (the epoch's hot batches) hot batches,
snapshot the hot rows; after another `window` x (hot batches), snapshot again; fit the
staleness detector on a sample of the hot inputs the epoch has not trained yet; from then on,
hot inputs whose lookups are all (or `alpha`) stale get no forward and no backward for the rest
of the epoch. Cold inputs are never skipped. Approximate by design: the quality bound is
stated and measured in the README and tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from hotrec.placement.staleness import StalenessDetector
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Schedule, StepResult
from hotrec.training.schedules.hotline import Prepared
from hotrec.training.steps import select


class Slipstream(Schedule):
    def __init__(self, base: Schedule) -> None:
        self.base = base
        self.name = f"{base.name}+slipstream"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        self.base.attach(ctx)
        p = ctx.placement
        self.detector = StalenessDetector(
            p.slipstream_target, p.slipstream_tolerance, p.slipstream_alpha or None
        )
        self.mode = p.slipstream_mode
        self.skipped = self.seen_hot = self.consumed = 0
        self.epochs: list[dict] = []

    # -- the epoch's plan ------------------------------------------------------------------------
    def hot_batches_per_epoch(self) -> int:
        return len(getattr(self.base, "hot_batches", [])) or self.base.num_batches()

    def batches(self, epoch: int, start: int = 0) -> Iterator:
        p = self.ctx.placement
        n_hot = self.hot_batches_per_epoch()
        self.epoch, self.position, self.hot_seen = epoch, start, 0
        self.begin = int(p.slipstream_start * n_hot)
        self.window = max(1, int(p.slipstream_window * n_hot))
        self.end = self.begin + self.window
        self._unfreeze()  # every epoch starts with all rows live
        self.before = None
        self.fitted = False
        return self.base.batches(epoch, start)

    def num_batches(self) -> int:
        return self.base.num_batches()

    # -- one step --------------------------------------------------------------------------------
    def step(self, item) -> StepResult:
        prepared = isinstance(item, Prepared)
        self.consumed += len(item)
        size = len(item)
        slots = self._slots(item.batch.sparse if prepared else item.sparse)  # [B, T]
        hot_inputs = (slots >= 0).all(dim=1)  # [B]
        hot = prepared or bool(hot_inputs.all())  # hotline: every mini-batch trains hot rows
        if hot and self.hot_seen == self.begin and self.before is None:
            self.before = self._hot_rows_now()
        if self.fitted and self.mode == "skip":
            item = self._drop_skippable(item, slots, hot_inputs)
        self.position += 1
        if item is None:
            return StepResult.nothing_trained(size)
        result = self.base.step(item)
        if hot:
            self.hot_seen += 1
            if self.hot_seen == self.end and self.before is not None and not self.fitted:
                self._fit()
            elif self._freezing() and self.hot_seen % self.window == 0:
                self._recheck_frozen()
        return dataclasses.replace(result, skipped=size - len(item))

    def _hot_rows_now(self) -> torch.Tensor:
        """Current values of the hot rows [N, D]: synced to host first, so fae's replica being
        behind after a cold run does not matter."""
        self.base.sync()
        routed = self.base.routed
        return routed.store.weight.index_select(0, routed.replica.rows).clone()

    def _slots(self, sparse: torch.Tensor) -> torch.Tensor:
        return self.base.routed.slot_map[self.base.routed.global_ids(sparse)]  # [B, K]

    def _drop_skippable(self, item, slots: torch.Tensor, hot: torch.Tensor):
        """The item without its skippable hot inputs; None when nothing is left."""
        skip = torch.zeros_like(hot)
        skip[hot] = self.detector.skippable(slots[hot])
        self.skipped += int(skip.sum())
        self.seen_hot += int(hot.sum())
        record = self.epochs[-1]  # this epoch's realized share, over hot inputs after the fit
        record["skipped"] += int(skip.sum())
        record["hot_inputs_after_fit"] += int(hot.sum())
        if not skip.any():
            return item
        if skip.all():
            return None
        keep = ~skip
        if isinstance(item, Prepared):  # skipped inputs are all-hot: cold rows stay as gathered
            # A copy: the loop still counts the whole batch as consumed.
            return dataclasses.replace(
                item, batch=select(item.batch, keep), popular=item.popular[keep]
            )
        return select(item, keep)

    def _fit(self) -> None:
        after = self._hot_rows_now()
        sample = self._upcoming_hot_slots()
        self.detector.fit(self.before.cpu(), after.cpu(), sample)
        self.before, self.fitted = None, True
        d = self.detector
        self.epochs.append(
            {
                "epoch": self.epoch,
                "threshold": d.threshold_,
                "stale_rows": int(d.stale_.sum()),
                "sample_skip_share": round(d.skip_share_, 4),
                "sampled_inputs": int(sample.shape[0]),
                "skipped": 0,
                "hot_inputs_after_fit": 0,
            }
        )
        if self.mode == "freeze" and d.threshold_ is not None:
            self._freeze(d.stale_)

    def _upcoming_hot_slots(self) -> torch.Tensor:
        """Slots [S, T] of a seeded sample of the hot inputs this epoch has not trained yet."""
        p, ctx = self.ctx.placement, self.ctx
        rows = self._remaining_rows()
        rng = np.random.default_rng([ctx.seed, self.epoch, 7])
        take = max(1, int(round(p.slipstream_sample * len(rows)))) if len(rows) else 0
        rows = np.sort(rng.choice(rows, size=take, replace=False)) if take else rows
        sparse = torch.from_numpy(np.asarray(ctx.train.sparse[rows], np.int64))
        slots = self._slots(sparse)
        return slots[(slots >= 0).all(dim=1)]

    def _remaining_rows(self) -> np.ndarray:
        """Row indices of the batches after the current position in this epoch's order."""
        base = self.base
        if hasattr(base, "epoch_order"):  # fae: index batches
            order = base.epoch_order(self.epoch)[self.position :]
            return np.concatenate(order) if order else np.zeros(0, np.int64)
        loader = self.ctx.loader
        blocks = loader.batch_order(self.epoch)[self.position :]
        bs = loader.batch_size
        parts = [np.arange(b * bs, min((b + 1) * bs, loader.rows)) for b in blocks]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    # -- freeze mode ------------------------------------------------------------------------------
    def _freeze(self, stale: torch.Tensor) -> None:
        """Stop updating stale rows; remember the replica to measure live rows' next change."""
        replica = self.base.routed.replica
        replica.frozen = stale.to(replica.weight.device)
        replica.frozen_grads = torch.zeros_like(replica.weight)
        self.snapshot = self._hot_rows_now()
        self.epochs[-1]["frozen_rows"] = int(stale.sum())

    def _recheck_frozen(self) -> None:
        """Every window: live rows whose change fell below T freeze, frozen rows whose missed
        update (lr x summed gradient, an SGD estimate) reaches T come back to life."""
        replica, d = self.base.routed.replica, self.detector
        change = (self._hot_rows_now() - self.snapshot).abs().amax(dim=1)  # [N] live rows, host
        missed = replica.frozen_grads.abs().amax(dim=1).cpu() * replica.store.lr  # [N] frozen
        frozen = replica.frozen.cpu()
        change = torch.where(frozen, missed, change)
        revived = int((frozen & (change >= d.threshold_)).sum())
        self._freeze(change < d.threshold_)
        self.epochs[-1]["revived_rows"] = self.epochs[-1].get("revived_rows", 0) + revived

    def _freezing(self) -> bool:
        return self.mode == "freeze" and self.base.routed.replica.frozen is not None

    def _unfreeze(self) -> None:
        replica = getattr(getattr(self.base, "routed", None), "replica", None)
        if replica is not None:
            replica.frozen = replica.frozen_grads = None

    # -- the rest delegates ------------------------------------------------------------------------
    def traffic(self) -> tuple[int, int]:
        return self.base.traffic()

    def sync(self) -> None:
        self.base.sync()

    def reload(self) -> None:
        self.base.reload()

    def _time_saved(self) -> float:
        """Skipped inputs x measured step time per trained input (forward, backward, updates),
        both counted since this schedule was attached (the timer's seconds are too)."""
        seconds = self.ctx.timer.seconds
        busy = sum(seconds.get(k, 0.0) for k in ("transfer", "embedding", "mlp", "optimizer"))
        return round(self.skipped * busy / max(self.consumed - self.skipped, 1), 2)

    def stats(self) -> dict:
        return {
            **self.base.stats(),
            "schedule": self.name,
            "threshold": self.epochs[-1]["threshold"] if self.epochs else None,
            "skipped_inputs": self.skipped,
            "skipped_share_of_hot": round(self.skipped / max(self.seen_hot, 1), 4),
            "est_time_saved_s": self._time_saved(),
            "slipstream_epochs": self.epochs,
        }
