"""The training loop: BCE on logits, periodic validation, atomic checkpoints, exact resume."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hotrec.config import RunConfig
from hotrec.data.format import SPLITS, Dataset, open_dataset
from hotrec.data.loader import BatchLoader
from hotrec.device import make_device, set_deterministic
from hotrec.distributed.checkpoints import remove_older_shards, save_shards
from hotrec.distributed.group import from_env
from hotrec.distributed.sharded import Traffic, shard_state, without_stores
from hotrec.distributed.training import check_supported, distribute, traffic_report
from hotrec.errors import HotrecError
from hotrec.fileio import write_json_atomic
from hotrec.models.builders import build_dlrm
from hotrec.models.dlrm import place_model
from hotrec.progress import make_progress
from hotrec.training import runlog
from hotrec.training.checkpoint import load_checkpoint, save_checkpoint
from hotrec.training.context import StepContext
from hotrec.training.diagnosis import why_non_finite
from hotrec.training.evaluation import embedding_report, evaluate
from hotrec.training.interrupts import stop_on_signals
from hotrec.training.notes import setting_notes
from hotrec.training.optim import build_dense_optimizer
from hotrec.training.schedules import make_schedule
from hotrec.training.schedules.base import StepResult
from hotrec.training.steps import NonFiniteLoss, padding_multiple, resolve_precision
from hotrec.training.timers import StepTimer, SyncsPerStep


@dataclass
class TrainState:
    epoch: int = 0  # current epoch
    batch: int = 0  # next batch index within the epoch
    step: int = 0  # optimizer steps done
    samples: int = 0  # training samples consumed
    loss_sum: float = 0.0  # losses since the last train record (so a resumed log matches)
    loss_n: int = 0
    best_auc: float = -1.0  # best validation AUC so far (-1: none yet)
    best_step: int = 0  # the step that scored it (best.pt)
    since_best: int = 0  # validations since then without a better AUC (early stopping)


AUTO_EVAL_STEPS = 4000  # auto validation: per epoch, or 4 times per epoch above this


class Trainer:
    """Owns the model, optimizers, loaders and the run directory of one training run."""

    def __init__(self, cfg: RunConfig, run_dir: Path, dataset: Dataset | None = None) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.dataset = dataset or open_dataset(cfg.data.path)
        if not self.dataset.has_split("train"):
            raise HotrecError(f"{self.dataset.path} has no training rows: nothing to train on")
        for split in SPLITS:  # every split validated before anything is written or trained
            if self.dataset.has_split(split):
                self.dataset.split(split)
        self.dist = from_env(cfg.train.device, cfg.train.dist_backend, cfg.train.dist_timeout_s)
        self.device = make_device(cfg.train.device)
        check_supported(cfg, self.device.name, self.dist)
        self.precision, self.precision_why = resolve_precision(cfg.train.precision, self.device)
        if self.precision == "bf16" and self.device.name == "emulated":
            raise HotrecError(
                "--precision bf16 is not emulated (CPU autocast skips device tensors): use "
                "fp32 on --device emulated"
            )
        if cfg.train.deterministic:
            set_deterministic()
        if cfg.train.threads > 0:
            torch.set_num_threads(cfg.train.threads)
        self.model = build_dlrm(self.dataset.schema, cfg.model, cfg.optim, cfg.train.seed)
        place_model(self.model, self.device)
        self.network = None  # several ranks: stores sharded, networks under DDP
        self.traffic = Traffic()  # bytes sent to other ranks (several ranks)
        if self.dist.active:
            self.network = distribute(
                self.model, self.device.name, self.dist, self.traffic, cfg.train.dist_sharding
            )
        self.dense_opt = build_dense_optimizer(
            self.model.dense_parameters(), cfg.optim.dense, cfg.optim.dense_lr, cfg.optim.eps
        )
        d, pin = cfg.data, self.device.name == "cuda"
        self.part = (self.dist.rank, self.dist.world)  # each rank's part of every batch
        self.train_loader = BatchLoader(
            self.dataset.split("train"),
            d.batch_size,
            d.shuffle,
            cfg.train.seed,
            d.prefetch,
            pin,
            part=self.part,
        )
        self.state = TrainState()
        self.syncs = SyncsPerStep(self.device)  # device-to-host syncs per training step
        self.timer = StepTimer(self.device)
        self.ctx = StepContext(
            model=self.model,
            device=self.device,
            dense_opt=self.dense_opt,
            timer=self.timer,
            precision=self.precision,
            placement=cfg.placement,
            data=cfg.data,
            seed=cfg.train.seed,
            train=self.dataset.split("train"),
            loader=self.train_loader,
            feature_names=[t.name for t in self.dataset.schema.tables],
            embedding=cfg.model.embedding,
            embedding_dim=cfg.model.embedding_dim,
            network=self.network,
            dist=self.dist,
            pad_multiple=padding_multiple(
                self.model, self.device, self.precision, cfg.train.pad_multiple
            ),
        )
        self.schedule = make_schedule(cfg.placement)
        self.schedule.attach(self.ctx)
        self.notes = setting_notes(cfg.placement, ranks=self.dist.world,
                                   compacting=self.schedule.compact, precision=self.precision,
                                   pad_multiple=self.ctx.pad_multiple,
                                   on_host=self.device.is_host)  # fmt: skip
        self.timer.watch(self.model.embeddings, "embedding")

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self) -> dict:
        """Everything a resume needs, in host memory."""
        dev = self.device
        model = dev.state_to_host(self.model.state_dict())
        return {
            "model": without_stores(self.model, model) if self.dist.active else model,
            "dense_optimizer": dev.state_to_host(self.dense_opt.state_dict()),
            "state": asdict(self.state),
            "schedule": self.schedule.state(),
            "config": self.cfg.to_dict(),
        }

    def save(self, name: str = runlog.CHECKPOINT) -> None:
        """Every rank calls it. Several ranks: each writes its rows of the stores as a shard,
        then the first one writes the checkpoint file naming them (the file comes last, so
        it never names a partial set) and removes the shards it replaced."""
        self.schedule.sync()
        path = self.run_dir / name
        with self.timer.section("checkpoint"):
            state = self.checkpoint_state()
            if self.dist.active:
                state["shards"] = save_shards(path, self.model, self.dist)
            if self.dist.main:
                save_checkpoint(path, state)
                if self.dist.active:
                    remove_older_shards(path, state["shards"])
        self.dist.barrier()  # the file is complete before any rank reads it

    def load_model(self, state: dict) -> None:
        """A checkpoint's model state (of any world size) into this rank's model."""
        self.device.load_state(self.model, shard_state(self.model, state))

    def restore(self, ckpt: dict) -> None:
        try:
            self.load_model(ckpt["model"])
            self.device.load_optimizer(self.dense_opt, ckpt["dense_optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise HotrecError(
                f"the checkpoint does not fit this model and dataset (changed model options or "
                f"another dataset?): {first}"
            ) from None
        self.state = TrainState(**ckpt["state"])
        self.schedule.reload()
        self.schedule.load_state(ckpt.get("schedule") or {})

    # -- evaluation ----------------------------------------------------------------------------
    def eval_split(self, split: str, max_rows: int = 0) -> dict[str, float] | None:
        if not self.dataset.has_split(split):
            return None
        self.schedule.sync()
        d = self.cfg.data
        loader = BatchLoader(
            self.dataset.split(split),
            d.eval_batch_size,
            prefetch=d.prefetch,
            max_rows=max_rows,
            part=self.part,
        )
        with self.timer.section("eval"):
            return evaluate(self.model, loader, self.device, self.precision, self.dist)

    # -- the loop ------------------------------------------------------------------------------
    def step(self, batch) -> StepResult:
        """One optimizer step on one batch, the way the schedule runs it; on a device that
        counts device-to-host synchronizations, the step's count is kept."""
        self.ctx.step = self.state.step
        with self.syncs.step() as mark:
            result = self.schedule.step(batch)
            mark.trained = result.trained
        return result

    def fit(self, should_stop: Callable[[TrainState], bool] | None = None) -> dict:
        """Train until the configured epochs / max_steps, an interrupt, or should_stop(state)."""
        cfg, st = self.cfg.train, self.state
        log = runlog.NoLog()  # one metrics log and one progress display: the first rank's
        if self.dist.main:
            log = runlog.MetricsLog(self.run_dir / runlog.METRICS, st.step if st.step else None)
        total_steps = cfg.epochs * self.schedule.num_batches()
        if cfg.max_steps:
            total_steps = min(total_steps, cfg.max_steps)
        reason, start, start_samples = "completed", time.perf_counter(), st.samples
        first_step = st.step
        every = self.eval_interval()
        self._val_info = ""
        self.model.train()
        with stop_on_signals() as interrupted, make_progress("steps", self.dist.main) as bar:
            task = bar.add_task("train", total=total_steps, completed=st.step, rate="", info="")
            while st.epoch < cfg.epochs and reason == "completed":
                batches = self.schedule.batches(st.epoch, st.batch)
                try:
                    while True:
                        if cfg.max_steps and st.step >= cfg.max_steps:
                            reason = "max_steps"
                            break
                        with self.timer.section("data"):
                            batch = next(batches, None)
                        if batch is None:
                            break
                        try:
                            result = self.step(batch)
                        except NonFiniteLoss as e:
                            log.write({"kind": "error", "step": st.step + 1, "error": str(e)})
                            why = why_non_finite(batch, self.model, self.dataset, self.run_dir)
                            raise NonFiniteLoss(f"{e}; {why}") from None
                        samples = self.ctx.global_samples if self.dist.active else len(batch)
                        st.batch, st.samples = st.batch + 1, st.samples + samples
                        if not result.trained:  # every input filtered out (slipstream)
                            if interrupted.is_set() or (should_stop and should_stop(st)):
                                reason = "interrupted"
                                break
                            continue
                        st.step += 1
                        st.loss_sum, st.loss_n = st.loss_sum + result.loss, st.loss_n + 1
                        if st.step % cfg.log_every == 0 or st.step == total_steps:
                            rate = (st.samples - start_samples) / (time.perf_counter() - start)
                            log.write(self._train_record(st.loss_sum / st.loss_n, rate))
                            bar.update(
                                task,
                                completed=st.step,
                                rate=f"{rate:,.0f} samples/s",
                                info=f"loss {st.loss_sum / st.loss_n:.4f}{self._val_info}",
                            )
                            st.loss_sum, st.loss_n = 0.0, 0
                        due = every and st.step % every == 0 and st.step != total_steps
                        if due and self._validate(log):  # the last step: the final one follows
                            reason = "early_stopped"
                            break
                        if cfg.checkpoint_every and st.step % cfg.checkpoint_every == 0:
                            self.save()
                        stop = interrupted.is_set() or bool(should_stop and should_stop(st))
                        if self.dist.any(stop):  # every rank stops at the same step
                            reason = "interrupted"
                            break
                finally:  # stop the prefetch thread on every exit path
                    close = getattr(batches, "close", None)
                    if close is not None:
                        close()
                if reason == "completed":
                    st.epoch, st.batch = st.epoch + 1, 0
        train_seconds = time.perf_counter() - start
        self._steps_run = st.step - first_step
        self.save()
        by = interrupted.by if reason == "interrupted" else None
        return self._finish(log, reason, train_seconds, st.samples - start_samples, by)

    def eval_interval(self) -> int:
        """Steps between validations: train.eval_every, or for -1 (auto) once per epoch, or 4
        times per epoch when an epoch is longer than AUTO_EVAL_STEPS steps."""
        every = self.cfg.train.eval_every
        if every >= 0:
            return every
        per_epoch = self.schedule.num_batches()
        return per_epoch if per_epoch <= AUTO_EVAL_STEPS else max(1, per_epoch // 4)

    def _validate(self, log: runlog.MetricsLog) -> bool:
        """Validate now (data.max_eval_rows rows), keep best.pt when the AUC improved; True
        when early stopping says stop."""
        record = self._eval_record("val", self.cfg.data.max_eval_rows)
        if record is None:
            return False
        log.write(record)
        st, auc = self.state, record["auc"]
        if auc > st.best_auc:
            st.best_auc, st.best_step, st.since_best = auc, st.step, 0
            if self.cfg.train.keep_best:
                self.save(runlog.BEST)
        else:
            st.since_best += 1
        self._val_info = f", val AUC {auc:.4f} (best {st.best_auc:.4f} at step {st.best_step})"
        patience = self.cfg.train.early_stop
        return bool(patience) and st.since_best >= patience

    def _best_instead(self, val: dict | None, log: runlog.MetricsLog) -> dict | None:
        """After the final evaluation: when an earlier validation scored a better AUC, the
        best checkpoint's model is loaded (the one `hotrec eval` and artifacts use) and its
        val and test metrics returned; otherwise best.pt becomes the final model."""
        st, best = self.state, self.run_dir / runlog.BEST
        if not self.cfg.train.keep_best or val is None:
            return None
        if st.best_step == st.step and best.exists():  # validated at this very step
            return None
        if val["auc"] >= st.best_auc or not best.exists():
            st.best_auc, st.best_step, st.since_best = val["auc"], st.step, 0
            self.save(runlog.BEST)
            self.save()  # checkpoint.pt too: a resumed run must know the final model is best
            return None
        self.load_model(load_checkpoint(best, self.part)["model"])
        self.schedule.reload()
        out = {"step": st.best_step}
        for split in ("val", "test"):
            out[split] = self._eval_record(split, 0)
            if out[split] is not None:
                log.write({**out[split], "step": st.best_step, "final": True, "best": True})
        return out

    def _finish(
        self, log: runlog.MetricsLog, reason: str, seconds: float, samples: int, by: str | None
    ) -> dict:
        """result.json (written by the first rank); `by`: the signal that stopped the run."""
        result = {
            "stopped": reason,
            **({"stopped_by": by} if by else {}),
            "steps": self.state.step,
            "epochs_done": self.state.epoch,
            "samples": self.state.samples,
            "wall_s": round(seconds, 3),
            "samples_per_s": round(samples / seconds, 1) if seconds > 0 else 0.0,
            "device": str(self.device),
            "precision": self.precision,
            "precision_why": self.precision_why,
            "pad_multiple": self.ctx.pad_multiple,
            "notes": self.notes,
            **({"syncs_per_step": self.syncs.summary} if self.syncs.summary else {}),
            "placement": self.schedule.stats(),
            "embedding": embedding_report(
                self.model.embeddings,
                self.dataset.split("train"),
                self.cfg.data.batch_size,
                self.device,
            ),  # fmt: skip
        }
        if reason != "interrupted":
            result["val"] = self._eval_record("val", 0, log)
            result["test"] = self._eval_record("test", 0, log)
            best = self._best_instead(result["val"], log)
            if best is not None:  # the headline metrics are the model that is kept
                last = {"step": self.state.step, "val": result["val"], "test": result["test"]}
                result.update(val=best["val"], test=best["test"], last=last)
            result["best_step"] = self.state.best_step if self.cfg.train.keep_best else None
        result["time_split_s"] = self.timer.split()
        if self.dist.active:
            result["distributed"] = traffic_report(self.dist, self.traffic, self._steps_run)
        if self.dist.main:
            write_json_atomic(self.run_dir / runlog.RESULT, result)
        return result

    def _train_record(self, loss: float, rate: float) -> dict:
        st = self.state
        return {
            "kind": "train",
            "step": st.step,
            "epoch": st.epoch,
            "samples": st.samples,
            "loss": round(loss, 6),
            "samples_per_s": round(rate, 1),
        }

    def _eval_record(self, split: str, max_rows: int, log: runlog.MetricsLog | None = None):
        metrics = self.eval_split(split, max_rows)
        if metrics is None:
            return None
        record = {"kind": split, "step": self.state.step, "epoch": self.state.epoch, **metrics}
        if log is not None:  # the end-of-run evaluation: a resumed run drops it from the log
            log.write({**record, "final": True})
        return record
