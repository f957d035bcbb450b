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
from hotrec.config import load_config, replace
from hotrec.data.format import META, Dataset, SplitArrays, open_dataset
from hotrec.data.loader import BatchLoader
from hotrec.data.synthetic import synthesize
from hotrec.errors import HotrecError
from hotrec.training import runlog
from hotrec.training.trainer import Trainer, evaluate

INTERACTIONS = ("dot", "cat", "cross", "attention", "masked_transformer")


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


# ------------------------------------------------------------------------------- summary

AUC_GAIN_TARGET = 0.002  # masked_transformer's mean test AUC over dot's (the target)
MT, DOT = "masked_transformer", "dot"


def mean_runs(runs: list[dict]) -> dict:
    """Seed-averaged curve and per-period metrics (curves share their evaluation steps)."""
    first = runs[0]
    curve = [
        {
            "samples": p["samples"],
            "auc": round(float(np.mean([r["curve"][i]["auc"] for r in runs])), 6),
            "logloss": round(float(np.mean([r["curve"][i]["logloss"] for r in runs])), 6),
        }
        for i, p in enumerate(first["curve"])
    ]
    periods = {
        label: {
            key: round(float(np.mean([r["periods"][label][key] for r in runs])), 6)
            for key in ("auc", "logloss")
        }
        for label in first["periods"]
    }
    aucs = [p["auc"] for p in periods.values()]
    losses = [p["logloss"] for p in periods.values()]
    return {
        "mean_auc": round(float(np.mean(aucs)), 6),
        "mean_logloss": round(float(np.mean(losses)), 6),
        "seed_mean_aucs": [round(_mean_of(r, "auc"), 6) for r in runs],
        "auc_std_over_seeds": round(float(np.std([_mean_of(r, "auc") for r in runs])), 6),
        "final_val_auc": curve[-1]["auc"] if curve else None,
        "periods": periods,
        "curve": curve,
    }


def _mean_of(run: dict, key: str) -> float:
    return float(np.mean([p[key] for p in run["periods"].values()]))


def samples_to_reach(curve: list[dict], auc: float) -> float | None:
    """Samples at which the curve first reaches `auc`, linearly interpolated between the two
    validation points around the crossing (the first point if it is already there; None:
    never)."""
    prev = None
    for p in curve:
        if p["auc"] >= auc:
            if prev is None or p["auc"] == prev["auc"]:
                return float(p["samples"])
            frac = (auc - prev["auc"]) / (p["auc"] - prev["auc"])
            return prev["samples"] + frac * (p["samples"] - prev["samples"])
        prev = p
    return None


def _ranking(values: dict[str, float], reverse: bool = True) -> list[list]:
    """[[name, value], ...] best first (highest unless reverse=False)."""
    return [
        [n, round(v, 6)] for n, v in sorted(values.items(), key=lambda kv: kv[1], reverse=reverse)
    ]


def _best(values: dict[str, float]) -> str:
    return max(values, key=values.get)


def targets(runs: dict[str, list[dict]], summary: dict, step_ms: dict[str, float]) -> dict:
    """The issue's targets for masked_transformer, recomputed from the raw per-seed runs,
    with everything needed to judge them: seed and period breakdowns, margins against the
    seed spread, and plain-sentence notes on where masked_transformer does worse."""
    compared = list(runs)
    seeds = min(len(r) for r in runs.values()) if runs else 0
    periods = list(next(iter(summary.values()))["periods"]) if summary else []
    all_aucs = [p["auc"] for r in runs.values() for run in r for p in run["periods"].values()]
    refusal = None
    if set(compared) != set(INTERACTIONS):
        missing = sorted(set(INTERACTIONS) - set(compared))
        refusal = f"not all five interactions ran (missing: {', '.join(missing)})"
    elif not all_aucs or all(a <= 0.5 for a in all_aucs):
        refusal = "every test AUC is <= 0.5: nothing was learned, no ranking means anything"
    valid = refusal is None
    out: dict = {
        "compared": compared,
        "seeds": seeds,
        "periods": periods,
        "valid": valid,
        "refused_because": refusal,
    }
    notes: list[str] = []
    if refusal:
        notes.append(f"No target is marked met: {refusal}.")
    if MT not in summary:
        out["notes"] = notes + ["masked_transformer did not run: no target can be judged."]
        return out
    have_dot = DOT in summary

    # (a) best test AUC under drift: seed means, each seed, each period, each seed x period.
    means = {n: s["mean_auc"] for n, s in summary.items()}
    ranking = _ranking(means)
    best = ranking[0][0]
    runner_up = ranking[1][0] if len(ranking) > 1 else None
    per_seed = {}
    for i in range(seeds):
        v = {n: _mean_of(r[i], "auc") for n, r in runs.items()}
        per_seed[f"seed {i}"] = {"best": _best(v), "ranking": _ranking(v)}
    per_period = {}
    for label in periods:
        v = {n: s["periods"][label]["auc"] for n, s in summary.items()}
        per_period[label] = {"best": _best(v), "ranking": _ranking(v)}
    cells = {}
    for i in range(seeds):
        for label in periods:
            v = {n: r[i]["periods"][label]["auc"] for n, r in runs.items()}
            cells[f"seed {i}, {label}"] = _best(v)
    a: dict = {
        "best_on_mean": best,
        "ranking_by_mean": ranking,
        "per_seed": per_seed,
        "per_period_seed_mean": per_period,
        "per_seed_and_period_best": cells,
    }
    if runner_up:
        w_std, r_std = summary[best]["auc_std_over_seeds"], summary[runner_up]["auc_std_over_seeds"]
        margin = means[best] - means[runner_up]
        a["runner_up"] = runner_up
        a["margin_over_runner_up"] = round(margin, 6)
        a["auc_std_over_seeds"] = {best: w_std, runner_up: r_std}
        # With one seed there is no spread to compare with (None).
        a["margin_exceeds_seed_std"] = margin > max(w_std, r_std) if seeds > 1 else None
    a["met"] = valid and best == MT
    a["robust"] = valid and seeds > 0 and all(b == MT for b in cells.values())
    a["robust_means"] = (
        "masked_transformer is best in every seed x period cell (so also in every seed and every period)"
    )
    out["best_test_auc_under_drift"] = a
    if seeds < 2:
        notes.append("One seed only: no seed spread, so no ranking here is established.")
    if best == MT and runner_up and a["margin_exceeds_seed_std"] is False:
        notes.append(
            f"masked_transformer's margin over the runner-up {runner_up} on the mean test AUC "
            f"({a['margin_over_runner_up']:.4f}) is not larger than the seed spread "
            f"(auc_std_over_seeds {max(w_std, r_std):.4f}, {seeds} seeds): the top of the "
            "ranking is not established."
        )
    elif best != MT:
        notes.append(
            f"{best} has the best mean test AUC ({means[best]:.4f}), not masked_transformer "
            f"({means[MT]:.4f})."
        )
    for name, info in per_seed.items():
        if info["best"] != MT:
            v = dict(info["ranking"])
            notes.append(
                f"In {name} {info['best']} has the best mean test AUC ({v[info['best']]:.4f} vs "
                f"masked_transformer's {v[MT]:.4f})."
            )
    for label, info in per_period.items():
        if info["best"] != MT:
            v = dict(info["ranking"])
            notes.append(
                f"On {label} (seed mean) {info['best']} has the best test AUC "
                f"({v[info['best']]:.4f} vs masked_transformer's {v[MT]:.4f})."
            )
    lost = [f"{c} ({b})" for c, b in cells.items() if b != MT]
    if lost:
        notes.append(
            f"masked_transformer is not best in {len(lost)} of {len(cells)} seed x period "
            f"cells: {'; '.join(lost)}."
        )

    # (b) AUC gain over dot, on the mean and per seed (seeds are paired by seed number).
    if have_dot:
        gain = means[MT] - means[DOT]
        seed_gains = [
            round(_mean_of(runs[MT][i], "auc") - _mean_of(runs[DOT][i], "auc"), 6)
            for i in range(seeds)
        ]
        out["auc_gain_over_dot"] = {
            "target": AUC_GAIN_TARGET,
            "measured": round(gain, 6),
            "per_seed": seed_gains,
            "per_period_seed_mean": {
                p: round(summary[MT]["periods"][p]["auc"] - summary[DOT]["periods"][p]["auc"], 6)
                for p in periods
            },
            "met": valid and gain >= AUC_GAIN_TARGET,
            "met_in_every_seed": valid and all(g >= AUC_GAIN_TARGET for g in seed_gains),
        }
        short = [f"seed {i} ({g:+.4f})" for i, g in enumerate(seed_gains) if g < AUC_GAIN_TARGET]
        if short:
            notes.append(
                f"The AUC gain over dot is below the +{AUC_GAIN_TARGET} target in "
                f"{', '.join(short)}."
            )

    # (c) log loss (no target in the issue; reported because AUC hides calibration).
    losses = {n: s["mean_logloss"] for n, s in summary.items()}
    best_loss = min(losses, key=losses.get)
    c: dict = {
        "masked_transformer": losses[MT],
        "best": best_loss,
        "best_logloss": losses[best_loss],
        "vs_best": round(losses[MT] - losses[best_loss], 6),
        "ranking": _ranking(losses, reverse=False),
        "per_seed_masked_transformer": [round(_mean_of(r, "logloss"), 6) for r in runs[MT]],
    }
    if have_dot:
        c["dot"] = losses[DOT]
        c["vs_dot"] = round(losses[MT] - losses[DOT], 6)
        c["met"] = valid and losses[MT] <= losses[DOT]
        c["worse"] = losses[MT] > losses[DOT]
        c["met_means"] = "masked_transformer's mean test log loss is not above dot's"
    out["logloss"] = c
    if losses[MT] > losses[best_loss]:
        vs_dot = (
            f"dot's {losses[DOT]:.4f} ({100 * (losses[MT] / losses[DOT] - 1):+.1f}%) and "
            if have_dot
            else ""
        )
        notes.append(
            f"masked_transformer's mean test log loss is {losses[MT]:.4f}, worse than "
            f"{vs_dot}the best ({best_loss}, {losses[best_loss]:.4f}): it ranks its examples "
            "well (AUC) but its probabilities are worse calibrated."
        )

    # (d) step time against dot (measured interleaved on the same batches).
    if have_dot and DOT in step_ms and MT in step_ms:
        ratios = {n: round(v / step_ms[DOT], 3) for n, v in step_ms.items()}
        out["step_time_vs_dot"] = {
            "masked_transformer_ms": step_ms[MT],
            "dot_ms": step_ms[DOT],
            "ratio": ratios[MT],
            "all": ratios,
        }
        slower = [n for n, r in ratios.items() if n != MT and r < ratios[MT]]
        if slower:
            notes.append(
                f"masked_transformer's training step takes {ratios[MT]:.2f}x dot's "
                f"({step_ms[MT]:.1f} vs {step_ms[DOT]:.1f} ms), slower than "
                f"{', '.join(slower)}."
            )

    # (e) samples each seed-mean validation curve needs to reach dot's final val AUC.
    if have_dot and summary[DOT]["final_val_auc"] is not None:
        goal = summary[DOT]["final_val_auc"]
        reach = {n: samples_to_reach(s["curve"], goal) for n, s in summary.items()}
        reach = {n: None if v is None else int(round(v)) for n, v in reach.items()}
        mt_n, dot_n = reach[MT], reach[DOT]
        sooner = [  # dot is the reference (it gets there at its end), not a competitor here
            n
            for n, v in reach.items()
            if n not in (MT, DOT) and v is not None and (mt_n is None or v < mt_n)
        ]
        out["samples_to_reach_dot_final_val_auc"] = {
            "threshold_auc": goal,
            "samples": reach,
            "train_samples": {n: r[0]["train_samples"] for n, r in runs.items()},
            "eval_every_samples": _eval_spacing(summary[DOT]["curve"]),
            "sooner_than_masked_transformer": sooner,
            "met": valid and mt_n is not None and dot_n is not None and mt_n < dot_n,
            "note": "threshold = dot's final validation AUC (seed-mean curve); each count is "
            "where that interaction's seed-mean curve first reaches it, linearly interpolated "
            "between validation points. dot's own count is (at most) its full training length "
            "by construction: it is the reference, not a measurement.",
        }
        if sooner:
            who = ", ".join(f"{n} ({reach[n]:,} samples)" for n in sooner)
            verb = "reaches" if len(sooner) == 1 else "reach"
            notes.append(
                f"{who} {verb} dot's final val AUC {goal:.4f} sooner than masked_transformer "
                f"({mt_n:,} samples)."
                if mt_n is not None
                else f"{who} {verb} dot's final val AUC {goal:.4f}; masked_transformer never does."
            )
        first = summary[MT]["curve"][0] if summary[MT]["curve"] else None
        behind = [
            n
            for n, s in summary.items()
            if s["curve"] and first and s["curve"][0]["auc"] > first["auc"]
        ]
        if first and behind:
            notes.append(
                f"Early in training masked_transformer is behind: at {first['samples']:,} "
                f"samples its val AUC is {first['auc']:.4f}, below {', '.join(behind)}."
            )
    out["notes"] = notes
    return out


def _eval_spacing(curve: list[dict]) -> int | None:
    return curve[1]["samples"] - curve[0]["samples"] if len(curve) > 1 else None


def summarize(result: dict) -> dict:
    """(Re)compute every dataset's summary and targets from its raw per-seed runs and the step
    times, in place: the one summary of both the full run and --summarize."""
    step_ms = result.get("step_time_ms", {})
    if DOT in step_ms:
        result["step_time_vs_dot"] = {n: round(v / step_ms[DOT], 3) for n, v in step_ms.items()}
    for key in ("synthetic", "movielens"):
        data = result.get(key, {})
        if not data.get("run"):
            continue
        runs = data["per_seed"]
        data["summary"] = {name: mean_runs(r) for name, r in runs.items()}
        data["targets"] = targets(runs, data["summary"], step_ms)
        data["per_seed"] = runs  # keep the raw runs last in the file
    return result


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
