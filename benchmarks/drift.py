"""Feature interactions under distribution drift (Ad-Rec's evaluation, on this machine).

Synthetic criteo-kaggle-profile data with drift (the teacher's weights and the popular rows
move a little every day): each interaction (dot, cat, cross, attention, masked_transformer)
trains on the early days with the dlrm-reference preset (SGD), then is evaluated on every later day
separately. Validation AUC on held-out rows of the last day every --eval-every steps gives the
convergence curve (AUC vs samples seen); the median step time is measured afterwards with all
interactions side by side, interleaved round by round, on the same batches.

With --movielens DIR (a dataset from `hotrec prepare movielens`: splits in time order) the same
is done there: train on the train split, validate on the val split, and evaluate the test
split cut into --periods consecutive time periods. Without it the JSON says why it did not run.

The summary and the targets are computed from the raw per-seed runs (per_seed in the JSON) by
one function, summarize(): the mean ranking and the ranking in every seed and period with the
winner's margin against the seed spread, the AUC gain over dot, log loss, step time, and the
samples each interaction's validation curve needs to reach dot's final validation AUC, plus
plain notes on where masked_transformer does worse. No target is marked met unless all five
interactions ran and something was learned (AUC > 0.5). --summarize PATH redoes this for a
saved result without training (and redraws its plots).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from common import command_line, machine, save, training_args
from drift_summary import DOT, INTERACTIONS, summarize
from hotrec.config import load_config, replace
from hotrec.data.format import META, Dataset, SplitArrays, open_dataset
from hotrec.data.loader import BatchLoader
from hotrec.data.synthetic import synthesize
from hotrec.errors import HotrecError
from hotrec.training import runlog
from hotrec.training.trainer import Trainer, evaluate


@dataclass
class RowRange:
    """Rows [start, stop) of one split of the underlying dataset."""

    split: str
    start: int
    stop: int


class DatasetView:
    """A dataset whose splits are row ranges of another one's (for the Trainer)."""

    def __init__(self, base: Dataset, ranges: dict[str, RowRange]) -> None:
        self.base, self.ranges = base, ranges
        self.path, self.meta, self.schema = base.path, base.meta, base.schema

    def split(self, name: str) -> SplitArrays:
        return rows_of(self.base, self.ranges[name])

    def has_split(self, name: str) -> bool:
        r = self.ranges.get(name)
        return r is not None and r.stop > r.start


def rows_of(ds: Dataset, r: RowRange) -> SplitArrays:
    """Zero-copy memmap views of the rows of one range."""
    a, rows = ds.split(r.split), slice(r.start, r.stop)
    return SplitArrays(a.dense[rows], a.sparse[rows], a.label[rows])


# ------------------------------------------------------------------------------- data


def synthetic_dataset(args) -> Path:
    """The drifting synthetic dataset (made once per option set under --workdir)."""
    name = f"drift-{args.rows}-cap{args.max_table_rows}-days{args.days}-drift{args.drift}"
    path = args.workdir / name
    if not (path / META).exists():
        synthesize(
            path,
            profile="criteo-kaggle",
            rows=args.rows,
            max_table_rows=args.max_table_rows,
            days=args.days,
            drift=args.drift,
            seed=0,
            overwrite=path.exists(),
        )
    return path


def synthetic_plan(ds: Dataset, train_days: int, eval_rows: int):
    """Train on days < train_days; validate on the first eval_rows of the last day's val
    half; evaluate every later training-split day and the last day's test half."""
    days = [d for d in ds.meta["days"] if d["split"] == "train"]
    if not 1 <= train_days < len(days) + 1:
        raise HotrecError(f"--train-days must be in 1..{len(days)}, got {train_days}")
    stop = days[train_days - 1]["stop"]
    ranges = {"train": RowRange("train", 0, stop), "val": _capped(ds, "val", eval_rows)}
    periods = {
        f"day {d['day']}": RowRange("train", d["start"], d["stop"]) for d in days[train_days:]
    }
    last = max(d["day"] for d in ds.meta["days"])
    periods[f"day {last} (test)"] = RowRange("test", 0, ds.meta["splits"]["test"])
    return DatasetView(ds, ranges), periods


def movielens_plan(ds: Dataset, periods: int, eval_rows: int):
    """Train split, val split (capped) for the curve, test split cut into time periods."""
    n = ds.meta["splits"].get("test", 0)
    if n < periods:
        raise HotrecError(f"{ds.path}: the test split has {n} rows, fewer than --periods")
    ranges = {"train": RowRange("train", 0, ds.meta["splits"]["train"])}
    ranges["val"] = _capped(ds, "val", eval_rows)
    cuts = [n * i // periods for i in range(periods + 1)]
    out = {}
    for i in range(periods):
        out[f"test period {i + 1}/{periods}"] = RowRange("test", cuts[i], cuts[i + 1])
    return DatasetView(ds, ranges), out


def _capped(ds: Dataset, split: str, rows: int) -> RowRange:
    n = ds.meta["splits"].get(split, 0)
    return RowRange(split, 0, min(n, rows) if rows > 0 else n)


# ------------------------------------------------------------------------------- training


def run_config(args, data: Path, interaction: str, seed: int):
    cfg = load_config("dlrm-reference", [f"data.path={str(data)!r}"])
    return replace(
        cfg,
        data={"batch_size": args.batch_size, "prefetch": 2},
        model={"interaction": interaction},
        train={
            "seed": seed,
            "device": args.device,
            "eval_every": args.eval_every,
            "checkpoint_every": 0,
            "threads": args.threads,
        },
    )


def train_and_evaluate(args, view, periods, interaction: str, seed: int) -> dict:
    """One training run; returns its convergence curve and per-period metrics."""
    run_dir = args.workdir / "drift-runs" / f"{Path(view.path).name}-{interaction}-seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(run_config(args, view.path, interaction, seed), run_dir, dataset=view)
    result = trainer.fit()
    n_train, bs = len(view.split("train")), args.batch_size
    curve = [
        {
            "samples": min(r["step"] * bs, n_train),
            "auc": round(r["auc"], 6),
            "logloss": round(r["logloss"], 6),
        }
        for r in runlog.read_metrics(run_dir)
        if r["kind"] == "val"
    ]
    (run_dir / runlog.CHECKPOINT).unlink(missing_ok=True)  # ~100 MB each, not needed
    trainer.schedule.sync()
    per_period = {}
    for label, rows in periods.items():
        loader = BatchLoader(rows_of(view.base, rows), trainer.cfg.data.eval_batch_size)
        m = evaluate(trainer.model, loader, trainer.device, trainer.precision)
        per_period[label] = {"auc": round(m["auc"], 6), "logloss": round(m["logloss"], 6)}
    return {
        "train_samples": result["samples"],
        "train_wall_s": result["wall_s"],
        "curve": curve,
        "periods": per_period,
    }


def step_times(args, view, interactions) -> dict[str, float]:
    """Median ms per training step, all interactions interleaved round by round."""
    trainers = {}
    for name in interactions:
        run_dir = args.workdir / "drift-runs" / f"timing-{name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        trainers[name] = Trainer(run_config(args, view.path, name, 0), run_dir, dataset=view)
    loader = BatchLoader(view.split("train"), args.batch_size, prefetch=0)
    batches = [loader.load(i) for i in range(min(args.timing_steps, len(loader)))]
    times: dict[str, list[float]] = {n: [] for n in interactions}
    for r in range(args.timing_rounds + 1):  # round 0 warms up
        for name, trainer in trainers.items():
            trainer.model.train()
            for b in batches:
                t = time.perf_counter()
                trainer.step(b)
                if r:
                    times[name].append(time.perf_counter() - t)
    return {n: round(1000 * statistics.median(t), 3) for n, t in times.items()}


def run_dataset(args, view, periods, interactions) -> dict:
    """Raw per-seed runs; summarize() adds the summary and targets."""
    runs: dict[str, list[dict]] = {}
    for name in interactions:
        for seed in range(args.seeds):
            print(f"{Path(view.path).name}: {name} seed {seed}")
            runs.setdefault(name, []).append(train_and_evaluate(args, view, periods, name, seed))
    return {
        "run": True,
        "train_rows": len(view.split("train")),
        "val_rows": len(view.split("val")),
        "periods": {k: {"split": r.split, "rows": r.stop - r.start} for k, r in periods.items()},
        "per_seed": runs,
    }


def run(args) -> dict:
    t0 = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)  # before machine() records it
    torch.manual_seed(0)
    interactions = [i for i in args.interactions.split(",") if i]
    unknown = set(interactions) - set(INTERACTIONS)
    if unknown:
        raise SystemExit(f"unknown interaction(s): {', '.join(sorted(unknown))}")
    data = open_dataset(synthetic_dataset(args))
    view, periods = synthetic_plan(data, args.train_days, args.eval_rows)
    result = {
        "benchmark": "drift",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "preset": "dlrm-reference (D=16, bottom 512-256-64-16, top 512-256-1, SGD 0.1)",
            "device": args.device,
            "batch_size": args.batch_size,
            "seeds": args.seeds,
            "eval_every_steps": args.eval_every,
            "interactions": interactions,
            "synthetic": {
                "profile": "criteo-kaggle",
                "rows": args.rows,
                "max_table_rows": args.max_table_rows,
                "embedding_rows": int(sum(data.schema.table_rows)),
                "days": args.days,
                "drift": args.drift,
                "train_days": list(range(args.train_days)),
                "note": "rows and table sizes scaled down to fit the time budget on this CPU",
            },
        },
    }
    result["synthetic"] = run_dataset(args, view, periods, interactions)
    if args.movielens:
        ml = open_dataset(args.movielens)
        ml_view, ml_periods = movielens_plan(ml, args.periods, args.eval_rows)
        result["movielens"] = {"path": str(args.movielens)}
        result["movielens"].update(run_dataset(args, ml_view, ml_periods, interactions))
    else:
        result["movielens"] = {
            "run": False,
            "reason": "no MovieLens dataset on this machine and nothing may be downloaded; "
            "pass --movielens DIR (from `hotrec prepare movielens`) to include it",
        }
    result["step_time_ms"] = step_times(args, view, interactions)
    summarize(result)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


def resummarize(path: Path) -> None:
    """--summarize: recompute summary and targets of a saved result from its raw per-seed
    runs (no training), rewrite the JSON in place and redraw both plots."""
    result = json.loads(path.read_text())
    if result.get("benchmark") != "drift":
        raise SystemExit(f"error: {path} is not a drift benchmark result")
    summarize(result)
    result["summarized_from_raw"] = True
    result["summarized_at"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    path.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, path.with_suffix(".png"))
    print(f"re-summarized {path} and redrew {path.stem}.png, {path.stem}_convergence.png")


# ------------------------------------------------------------------------------- plots


def plot(result: dict, path: Path) -> None:
    """<name>.png: AUC and log loss per evaluation period; <name>_convergence.png: AUC vs
    samples seen. One row per dataset that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [k for k in ("synthetic", "movielens") if result[k].get("run")]
    where = f"{result['machine']['cpu']} ({result['machine']['cores']} cores)"
    fig, axes = plt.subplots(len(sets), 2, figsize=(12, 4.2 * len(sets)), squeeze=False)
    for row, key in zip(axes, sets, strict=True):
        summary, raw = result[key]["summary"], result[key]["per_seed"]
        for n, (name, s) in enumerate(summary.items()):
            labels = list(s["periods"])
            xs = np.arange(len(labels)) + 0.04 * (n - (len(summary) - 1) / 2)  # dodge the bars
            for ax, metric in zip(row, ("auc", "logloss"), strict=True):
                mean = np.array([s["periods"][p][metric] for p in labels])
                seeds = np.array([[r["periods"][p][metric] for p in labels] for r in raw[name]])
                spread = [mean - seeds.min(0), seeds.max(0) - mean]
                ax.errorbar(xs, mean, yerr=spread, fmt="o-", capsize=3, label=name)
                ax.set_xticks(range(len(labels)), labels)
        row[0].set_ylabel("test AUC")
        row[1].set_ylabel("test log loss")
        for ax, what in zip(row, ("AUC", "log loss"), strict=True):
            ax.set_title(
                f"{key}: {what} per evaluation period (seed mean, bars: min-max)", fontsize=10
            )
            ax.tick_params(axis="x", labelsize=8)
        row[0].legend(fontsize=8)
    fig.suptitle(where, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.5), squeeze=False)
    for ax, key in zip(axes[0], sets, strict=True):
        for name, s in result[key]["summary"].items():
            xs = [p["samples"] for p in s["curve"]]
            ax.plot(xs, [p["auc"] for p in s["curve"]], ".-", label=name)
        goal = result[key]["targets"].get("samples_to_reach_dot_final_val_auc", {})
        if goal:
            ax.axhline(goal["threshold_auc"], color="gray", ls="--", label="dot's final val AUC")
            hits = [n for name, n in goal["samples"].items() if n is not None and name != DOT]
            ax.plot(hits, [goal["threshold_auc"]] * len(hits), "kx", ms=6, label="first reaches it")
        ax.set_xlabel("training samples seen")
        ax.set_ylabel("validation AUC")
        ax.set_title(f"{key}: convergence", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(where, fontsize=9)
    fig.tight_layout()
    fig.savefig(path.with_name(f"{path.stem}_convergence.png"), dpi=120)
    plt.close(fig)


def main() -> None:
    p = training_args(__doc__)
    p.set_defaults(rows=2_100_000, max_table_rows=200_000, name="drift")
    p.add_argument("--days", type=int, default=7, help="synthetic days (last = val/test)")
    p.add_argument(
        "--drift",
        type=float,
        default=0.5,
        help="synthetic drift strength 0..1 (at 1 the last day's labels come from an unrelated "
        "teacher and every interaction is near AUC 0.5 there)",
    )
    p.add_argument("--train-days", type=int, default=4, help="train on days 0..N-1")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seeds", type=int, default=2, help="training seeds per interaction")
    p.add_argument("--eval-every", type=int, default=100, help="validation every N steps")
    p.add_argument("--eval-rows", type=int, default=50_000, help="validation rows")
    p.add_argument("--interactions", default=",".join(INTERACTIONS))
    p.add_argument("--timing-steps", type=int, default=20, help="batches per timing round")
    p.add_argument("--timing-rounds", type=int, default=5)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0 = torch's default); 1 by default because on a shared 2-core "
        "machine two spinning threads per process slow every step down many times over",
    )
    p.add_argument("--movielens", type=Path, help="a `hotrec prepare movielens` dataset")
    p.add_argument("--periods", type=int, default=4, help="MovieLens test periods")
    p.add_argument(
        "--summarize",
        type=Path,
        metavar="PATH",
        help="no training: recompute summary and targets of a saved drift JSON from its raw "
        "per-seed runs, rewrite it and redraw its two PNGs next to it",
    )
    args = p.parse_args()
    if args.summarize:
        resummarize(args.summarize)
        return
    try:
        result = run(args)
    except HotrecError as e:
        raise SystemExit(f"error: {e}") from None
    save(args, "drift", result, plot)


if __name__ == "__main__":
    main()
