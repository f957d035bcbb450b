"""slipstream: skip hot inputs whose embeddings stopped changing (Maboud et al., 2024).

A filter over any schedule (baseline, device_only, fae, hotline), per epoch: after `start` x
(the epoch's hot batches) hot batches, snapshot the hot rows; after another `window` x (hot
batches), snapshot again; fit the staleness detector on a sample of the hot inputs the epoch
has not trained yet; from then on, hot inputs whose lookups are all (or `alpha`) stale get
no forward and no backward for the rest of the epoch (mode "skip"), or stale rows get no
update while every input trains (mode "freeze", through the row part's update filter).
Cold inputs are never skipped. With `compact` (one process) the kept inputs
are re-packed into full mini-batches (compaction.py), so skipped inputs remove whole steps.
`select` "random" is a control: as many hot inputs skipped, drawn at random instead of stale.

The hot rows watched are the base schedule's hot set when it has one (fae, hotline: the
device replica), else a profile of the training split under the same hot budget (baseline,
device_only: rows in the store). The filter knows the protocol only: items carry their
global rows and slots, `select` narrows them, `sync` makes the store current.
Approximate by design: the quality bound is stated and measured in the README and tests.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from hotrec.data.loader import jagged_ids, make_batch
from hotrec.errors import HotrecError
from hotrec.placement.staleness import StalenessDetector
from hotrec.training.context import StepContext
from hotrec.training.optim import learning_rates_scaled
from hotrec.training.schedules.base import PAD, Prepared, Schedule, StepResult, per_input
from hotrec.training.schedules.compaction import Compactor
from hotrec.training.schedules.placed import obtain_hotset
from hotrec.types import Bags, Batch


class Slipstream(Schedule):
    def __init__(self, base: Schedule) -> None:
        self.base = base
        self.name = f"{base.name}+slipstream"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        self.base.attach(ctx)
        p = ctx.placement
        self.hotset = self.base.hotset or obtain_hotset(ctx)
        self.slot_map = torch.from_numpy(self.hotset.slot_map())  # [R] host: slot, -1 = cold
        self.watched = torch.as_tensor(self.hotset.rows, dtype=torch.int64)  # [N] global rows
        self.detector = StalenessDetector(
            p.slipstream_target, p.slipstream_tolerance, p.slipstream_alpha or None
        )
        self.mode, self.select = p.slipstream_mode, p.slipstream_select
        self.skipped = self.seen_hot = self.consumed = 0
        # compaction: one process (ranks would have to agree on when each step runs)
        self.compactor = Compactor(ctx.loader.batch_size)
        self.compact = p.slipstream_compact and p.slipstream_mode == "skip" and not ctx.dist.active
        self.steps_saved = self.compacted_steps = self.steps_run = 0
        self.epochs: list[dict] = []
        self.frozen: torch.Tensor | None = None  # bool [N] host: rows whose updates are held
        self.frozen_grads: torch.Tensor | None = None  # [N, D]: the updates they missed
        ctx.rows.update_filter = self._hold_frozen

    # -- the epoch's plan ------------------------------------------------------------------------
    def batches(self, epoch: int, start: int = 0, prepare=None):
        p = self.ctx.placement
        n_hot = self.base.hot_batches_per_epoch()
        self.epoch, self.position, self.hot_seen = epoch, start, 0
        self.begin = int(p.slipstream_start * n_hot)
        self.window = max(1, int(p.slipstream_window * n_hot))
        self.end = self.begin + self.window
        self.frozen = self.frozen_grads = None  # every epoch starts with all rows live
        self.before = None
        self.fitted = False
        self.order = self.base.epoch_rows(epoch)  # the rows of each batch, in order
        return self.base.batches(epoch, start, self.prepare)

    def num_batches(self) -> int:
        return self.base.num_batches()

    def prepare(self, batch: Batch) -> Prepared:
        """The base schedule's item, with slots in the watched hot set when it has none."""
        item = self.base.prepare(batch)
        if item.slots is None:
            item.slots = self.slots(item.ids)  # [B, K]
        return item

    def slots(self, ids: torch.Tensor) -> torch.Tensor:
        """Global rows (host) -> slots in the watched hot set, -1 where cold."""
        return self.slot_map.index_select(0, ids.reshape(-1)).view(ids.shape)

    # -- one step --------------------------------------------------------------------------------
    def step(self, item: Prepared | Batch) -> StepResult:
        if isinstance(item, Batch):
            item = self.prepare(item)
        size = len(item)
        self.consumed += size
        if item.trains_hot and self.hot_seen == self.begin and self.before is None:
            self.before = self._hot_rows_now()
        position, self.position = self.position, self.position + 1
        skip, kept = None, size
        if self.fitted and self.mode == "skip":
            skip = self._skippable(item, position)
            kept -= int(skip.sum())
        scale = 1.0  # the step's learning-rate scale (compaction)
        if self.compact and ((skip is not None and skip.any()) or len(self.compactor)):
            trained, scale = self._compacted(item, skip, position)
        else:
            trained = self._kept(item, skip)
        everyone = None
        if self.fitted and self.mode == "skip" and self.ctx.dist.active:
            trained, everyone = self._across_ranks(item, trained)
        result = None
        if trained is not None:
            with learning_rates_scaled(self.ctx.dense_opt, self.ctx.store, scale):
                result = self.base.step(trained)
        self.steps_run += result is not None
        if everyone is not None:  # the trainer counts the global batch, skipped inputs too
            self.ctx.global_samples = everyone
        if item.trains_hot:
            self.hot_seen += 1
            if self.hot_seen == self.end and self.before is not None and not self.fitted:
                self._fit()
            elif self._freezing() and self.hot_seen % self.window == 0:
                self._recheck_frozen()
        if result is None:
            return StepResult.nothing_trained(size - kept)
        return dataclasses.replace(result, skipped=size - kept)

    def _skippable(self, item: Prepared, position: int) -> torch.Tensor:
        """bool [B]: the item's hot inputs whose lookups are stale (counted); with select
        "random" (a control) hot inputs drawn with the probability that the fit found stale
        inputs in its sample, so about as many are skipped, chosen without looking at rows."""
        skip, n_hot = self.detector.decide(item.slots_per_input())
        if self.select == "random":
            rng = np.random.default_rng([self.ctx.seed, self.epoch, position, 11])
            draw = torch.from_numpy(rng.random(len(item)) < self.detector.skip_share_)
            skip = item.all_hot() & draw
        n = int(skip.sum())
        self.skipped += n
        self.seen_hot += n_hot
        record = self.epochs[-1]  # this epoch's realized share, over hot inputs after the fit
        record["skipped"] += n
        record["hot_inputs_after_fit"] += n_hot
        return skip

    @staticmethod
    def _kept(item: Prepared, skip: torch.Tensor | None) -> Prepared | None:
        """The item without its skipped inputs (a copy: the loop still counts the whole batch
        as consumed); None when nothing is left."""
        if skip is None or not skip.any():
            return item
        if skip.all():
            return None
        return item.select(~skip)

    def _compacted(self, item: Prepared, skip: torch.Tensor | None, position: int):
        """Kept inputs join the queue: (the item of the next full batch or None, its
        learning-rate scale). A batch of the cold stream (fae) is never filtered: it runs as
        it came, unless it is the epoch's last, which takes the queue along."""
        last = position == len(self.order) - 1
        if not item.trains_hot and not last:
            return item, 1.0
        rows = self.order[position]
        if skip is not None:
            rows = rows[~skip.numpy()]
        untouched = len(self.compactor) == 0 and len(rows) == len(item)
        weight = len(item) / len(rows) if len(rows) else 1.0  # the arrival's size / kept
        taken = self.compactor.add(rows, last, weight)
        if taken is None:
            self.steps_saved += 1
            return None, 1.0
        self.compacted_steps += 1
        take, scale = taken
        if untouched and len(take) == len(item):  # the item itself: nothing to read again
            return item, scale
        batch = make_batch(self.ctx.train, take, self.ctx.loader.pin_memory)
        return self.prepare(batch), scale

    def _hot_rows_now(self) -> torch.Tensor:
        """Current values of the watched rows [N, D]: the base's replica when it has one (it
        holds exactly the watched rows, and on several ranks it is the same on every rank),
        else the store made current first."""
        routed = getattr(self.base, "routed", None)
        if routed is not None:
            return self.ctx.device.to_host(routed.replica.weight).clone()
        self.base.sync()
        store, home = self.ctx.store, getattr(self.ctx.rows, "home", None)
        if home is None:  # the store is in host memory
            return store.weight.index_select(0, self.watched).clone()
        return home.to_host(store.weight.index_select(0, home.upload(self.watched)))

    def _across_ranks(self, item: Prepared, trained: Prepared | None):
        """Several ranks: each skipped its own inputs; a step runs when any rank trains one
        (a rank with none left steps on an empty part, so the collectives meet). (trained
        or None, the global batch's inputs)."""
        left = 0 if trained is None else len(trained)
        counts = self.ctx.dist.all_sum(torch.tensor([left, len(item)]))
        self.ctx.global_samples = int(counts[1])
        if int(counts[0]) == 0:
            return None, int(counts[1])
        if trained is None:
            trained = item.select(torch.zeros(len(item), dtype=torch.bool))
        return trained, int(counts[1])

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
        """Slots [S, K] of a seeded sample of the hot inputs this epoch has not trained yet."""
        ctx = self.ctx
        order = self.order[self.position :]
        rows = np.concatenate(order) if order else np.zeros(0, np.int64)
        rng = np.random.default_rng([ctx.seed, self.epoch, 7])
        take = max(1, int(round(ctx.placement.slipstream_sample * len(rows)))) if len(rows) else 0
        rows = np.sort(rng.choice(rows, size=take, replace=False)) if take else rows
        if ctx.train.layout is None:
            sparse = torch.from_numpy(np.asarray(ctx.train.sparse[rows], np.int64))
            slots = self.slots(self.base.global_ids(sparse))
            return slots[(slots >= 0).all(dim=1)]
        ids, lengths = jagged_ids(ctx.train, rows)  # multi-hot: every id of every bag
        keyed = ctx.rows.key_bags(Bags(torch.from_numpy(ids), torch.from_numpy(lengths)))
        slots = per_input(self.slots(ctx.rows.bag_rows(keyed)), keyed.lengths.sum(dim=1), PAD)
        return slots[(slots != -1).all(dim=1)]  # inputs without a cold lookup (-1)

    # -- freeze mode: a filter on row updates ----------------------------------------------------
    def _hold_frozen(self, rows: torch.Tensor, grads: torch.Tensor) -> torch.Tensor | None:
        """Updates of frozen rows are held back (their gradients summed in frozen_grads);
        the positions of the others, or None when nothing is held."""
        if self.frozen is None:
            return None
        slots = self.slot_map[rows.cpu()]  # [n] host
        held = (slots >= 0) & self.frozen[slots.clamp(min=0)]
        if not bool(held.any()):
            return None
        where = torch.nonzero(held).squeeze(1)
        dev = self.ctx.device
        self.frozen_grads.index_add_(
            0,
            dev.upload(slots.index_select(0, where)),
            grads.index_select(0, dev.beside(where, grads)).to(self.frozen_grads.dtype),
        )
        return torch.nonzero(~held).squeeze(1)

    def _freeze(self, stale: torch.Tensor) -> None:
        """Stop updating stale rows; remember the rows to measure live rows' next change."""
        self.frozen = stale.cpu()
        self.frozen_grads = self.ctx.device.zeros(len(self.watched), self.ctx.store.dim)
        self.snapshot = self._hot_rows_now()
        self.epochs[-1]["frozen_rows"] = int(stale.sum())

    def _recheck_frozen(self) -> None:
        """Every window: live rows whose change fell below T freeze, frozen rows whose missed
        update (lr x summed gradient, an SGD estimate) reaches T come back to life."""
        d = self.detector
        change = (self._hot_rows_now() - self.snapshot).abs().amax(dim=1).cpu()  # [N] live rows
        missed = self.frozen_grads.abs().amax(dim=1).cpu() * self.ctx.store.lr  # [N] frozen
        frozen = self.frozen
        change = torch.where(frozen, missed, change)
        revived = int((frozen & (change >= d.threshold_)).sum())
        self._freeze(change < d.threshold_)
        self.epochs[-1]["revived_rows"] = self.epochs[-1].get("revived_rows", 0) + revived

    def _freezing(self) -> bool:
        return self.mode == "freeze" and self.frozen is not None

    # -- the rest delegates ------------------------------------------------------------------------
    def hot_batches_per_epoch(self) -> int:
        return self.base.hot_batches_per_epoch()

    def epoch_rows(self, epoch: int) -> list[np.ndarray]:
        return self.base.epoch_rows(epoch)

    def traffic(self) -> tuple[int, int]:
        return self.base.traffic()

    def sync(self) -> None:
        self.base.sync()

    def reload(self) -> None:
        self.base.reload()

    def _time_saved(self) -> float:
        """An estimate from this run's own step time (forward, backward, updates; counted
        since this schedule was attached, as the timer's seconds are): steps saved x time
        per step when compacting, else skipped inputs x time per trained input."""
        seconds = self.ctx.timer.seconds
        busy = sum(seconds.get(k, 0.0) for k in ("transfer", "embedding", "mlp", "optimizer"))
        if self.compact:
            return round(self.steps_saved * busy / max(self.steps_run, 1), 2)
        return round(self.skipped * busy / max(self.consumed - self.skipped, 1), 2)

    def state(self) -> dict:
        return {**self.base.state(), **self.compactor.state()}

    def load_state(self, state: dict) -> None:
        self.base.load_state(state)
        self.compactor.load_state(state)
        if len(self.compactor) and not self.compact:
            raise HotrecError(
                f"the checkpoint holds {len(self.compactor):,} inputs Slipstream's compaction "
                "queued: resume it on one process with placement.slipstream_compact=true"
            )

    def stats(self) -> dict:
        """Counts over every rank (each skips inputs of its own part); time on this rank."""
        base = self.base.stats()
        d = self.ctx.dist
        skipped, seen_hot = (int(x) for x in d.all_sum(torch.tensor([self.skipped, self.seen_hot])))
        epochs = [dict(r) for r in self.epochs]
        for record in epochs:
            counts = torch.tensor([record["skipped"], record["hot_inputs_after_fit"]])
            record["skipped"], record["hot_inputs_after_fit"] = (int(x) for x in d.all_sum(counts))
        return {
            **base,
            "schedule": self.name,
            "select": self.select,  # "random": the control run, not Slipstream's choice
            "threshold": self.epochs[-1]["threshold"] if self.epochs else None,
            "skipped_inputs": skipped,
            "skipped_share_of_hot": round(skipped / max(seen_hot, 1), 4),
            "est_time_saved_s": self._time_saved(),
            **(
                {"steps_saved": self.steps_saved, "compacted_steps": self.compacted_steps}
                if self.compact
                else {}
            ),
            "slipstream_epochs": epochs,
        }
