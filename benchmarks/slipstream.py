"""Slipstream over every schedule: time saved against the skipped share, AUC cost, AUC vs D.

Side by side on the same synthetic criteo-kaggle-profile data and model, interleaved over
--rounds rounds (every variant once per round, in the same order): each of --schedules
without slipstream, with slipstream (compaction: kept inputs re-packed into full batches)
and, with --uncompacted, with slipstream training what is left of each batch (--unpadded:
also that without padding each forward to a multiple of 64 rows, which bf16 on the CPU gets
by default; train.pad_multiple=0). Round r trains every variant with seed r. Per schedule:
the epoch time saved per round (1 - slipstream / base, paired within a round) against the
share of the epoch's samples skipped, and the val AUC difference to the base schedule of the
same seed, medians with min-max. Then the AUC curve (--rounds 0: it alone): fae + slipstream
for each target D of --curve over --curve-seeds seeds, with --control also skipping as many
hot inputs chosen at random (--slipstream-select random), AUC against fae of the same seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from common import (
    command_line,
    finish_plot,
    kaggle_like_dataset,
    machine,
    save,
    spread,
    training_args,
)
from hotrec.config import load_config
from hotrec.training.runs import start_run

TARGET_SAVED_PER_SKIPPED = 0.8  # epoch time saved >= 0.8 x the skipped sample share
TARGET_AUC_LOSS = 0.0005


def train(args, data: Path, schedule: str, slipstream: bool, target: float = 0.3,
          compact: bool = True, seed: int = 0, pad: int = -1,
          select: str = "stale") -> dict:  # fmt: skip
    cfg = load_config(
        args.preset,
        [
            f"data.path={str(data)!r}",
            f"train.device={args.device!r}",
            "train.checkpoint_every=0",
            "train.eval_every=0",
            f"placement.schedule={schedule!r}",
            f"placement.hot_budget={args.hot_budget!r}",
            f"placement.sample_fraction={args.profile_sample}",
            f"placement.slipstream={str(slipstream).lower()}",
            f"placement.slipstream_target={target}",
            f"placement.slipstream_compact={str(compact).lower()}",
            f"placement.slipstream_select={select!r}",
            # as the bound test: outside fae nearly every input has a row still changing, so
            # with all 26 lookups required no threshold lands in the band (nothing skipped)
            f"placement.slipstream_alpha={0 if schedule == 'fae' else args.alpha}",
            f"train.epochs={args.epochs}",
            f"train.seed={seed}",
            f"train.pad_multiple={pad}",
        ],
    )
    res = start_run(cfg, args.workdir / "run-slipstream", overwrite=True).fit()
    p = res["placement"]
    return {
        "schedule": p["schedule"],
        "target": target if slipstream else 0.0,
        "select": select if slipstream else None,
        "compact": compact if slipstream else None,
        "seed": seed,
        "wall_s": res["wall_s"],
        "steps": res["steps"],
        "samples": res["samples"],
        "precision": res.get("precision"),
        "pad_multiple": res.get("pad_multiple"),
        "val_auc": round(res["val"]["auc"], 6),
        "hot_input_share": round(p.get("hot_input_share", 1.0), 4),
        "skipped_inputs": p.get("skipped_inputs", 0),
        "skipped_share_of_hot": p.get("skipped_share_of_hot", 0.0),
        "steps_saved": p.get("steps_saved", 0),
        "thresholds": [e["threshold"] for e in p.get("slipstream_epochs", [])],
    }


def variants(args) -> list[tuple[str, str, bool, bool, int]]:
    """(name, schedule, slipstream, compact, pad_multiple) in the order every round runs them."""
    out = []
    for s in args.schedules:
        out += [(s, s, False, True, -1), (f"{s}+slipstream", s, True, True, -1)]
        if args.uncompacted:
            out.append((f"{s}+slipstream-uncompacted", s, True, False, -1))
        if args.unpadded:
            out.append((f"{s}+slipstream-uncompacted-unpadded", s, True, False, 0))
    return out


def auc_curve(args, data: Path, fae_runs: list[dict]) -> list[dict]:
    """fae + Slipstream for each target D of --curve and each seed below --curve-seeds (and
    with --control the same with random selection), training what is left of each batch
    unless --curve-compact; AUC against fae of the same seed (from the rounds when they ran
    it, else trained here)."""
    curve = []
    for seed in range(args.curve_seeds if args.curve else 0):
        base = next((x for x in fae_runs if x["seed"] == seed), None)
        base = base or train(args, data, "fae", False, seed=seed)
        for d in args.curve:
            for select in ("stale", "random") if args.control else ("stale",):
                c = train(args, data, "fae", True, d, args.curve_compact, seed, select=select)
                c["skipped_share_of_samples"] = round(c["skipped_inputs"] / c["samples"], 4)
                c["auc_minus_fae"] = round(c["val_auc"] - base["val_auc"], 6)
                print("curve", c)
                curve.append(c)
    return curve


def summarize_curve(curve: list[dict]) -> list[dict]:
    """Per (D, selection): skipped share of samples and AUC - fae, medians with min-max over
    seeds, and the AUC cost per skipped sample share (AUC - fae) / skipped share."""
    out = []
    for key in dict.fromkeys((c["target"], c["select"]) for c in curve):
        runs = [c for c in curve if (c["target"], c["select"]) == key]
        skipped = [c["skipped_share_of_samples"] for c in runs]
        per = [c["auc_minus_fae"] / s for c, s in zip(runs, skipped, strict=True) if s > 0]
        entry = {"target": key[0], "select": key[1], "seeds": len(runs),
                 "skipped_share_of_samples": spread(skipped),
                 "auc_minus_fae": spread([c["auc_minus_fae"] for c in runs], 5),
                 "auc_per_skipped_share": spread(per, 4) if per else None}  # fmt: skip
        print("curve summary", entry)
        out.append(entry)
    return out


def summarize(rounds: dict[str, list[dict]]) -> dict:
    """Per variant: medians with min-max over rounds; for a slipstream variant also the time
    saved and the AUC difference against its base schedule's run of the same round."""
    summary = {}
    for name, runs in rounds.items():
        base = rounds[name.split("+")[0]]
        entry = {
            "wall_s": spread([x["wall_s"] for x in runs]),
            "steps": spread([x["steps"] for x in runs]),
            "val_auc": spread([x["val_auc"] for x in runs]),
        }
        if "+slipstream" in name:
            skipped = [x["skipped_inputs"] / x["samples"] for x in runs]
            saved = [1 - x["wall_s"] / b["wall_s"] for x, b in zip(runs, base, strict=True)]
            per = [t / s for t, s in zip(saved, skipped, strict=True) if s > 0]
            entry.update(
                skipped_share_of_samples=spread(skipped),
                skipped_share_of_hot=spread([x["skipped_share_of_hot"] for x in runs]),
                steps_saved=spread([x["steps_saved"] for x in runs]),
                time_saved=spread(saved),
                time_saved_per_skipped=spread(per) if per else None,
                auc_minus_base=spread(
                    [x["val_auc"] - b["val_auc"] for x, b in zip(runs, base, strict=True)], 5
                ),
            )
        summary[name] = entry
        print(name, entry)
    return summary


def run(args: argparse.Namespace) -> dict:
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    rounds: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for name, schedule, ss, compact, pad in variants(args):
            run_ = train(args, data, schedule, ss, compact=compact, seed=r, pad=pad)
            rounds.setdefault(name, []).append(run_)
        said = (f"{n} {v[-1]['wall_s']:.1f} s ({v[-1]['skipped_inputs']:,} skipped)"
                for n, v in rounds.items())  # fmt: skip
        print(f"round {r}: " + ", ".join(said))
    summary = summarize(rounds)
    curve = auc_curve(args, data, rounds.get("fae", []))
    return {
        "benchmark": "slipstream",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "preset": args.preset,
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "hot_budget": args.hot_budget,
            "profile_sample": args.profile_sample,
            "epochs": args.epochs,
            "rounds": args.rounds,
            "device": args.device,
            "precision": next(iter(rounds.values()), curve)[0]["precision"],
        },
        "summary": summary,
        "rounds": rounds,
        "auc_vs_target": curve,
        "auc_vs_target_summary": summarize_curve(curve),
        "targets": {
            "time_saved_per_skipped": TARGET_SAVED_PER_SKIPPED,
            "auc_loss_max": TARGET_AUC_LOSS,
        },  # fmt: skip
        "gpu": "not run: no GPU was lent to this task" if args.device == "cpu" else None,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, curve = result["summary"], result["auc_vs_target"]
    panels = bool(summary) + bool(curve)
    fig, axes = plt.subplots(1, panels, figsize=(7 * panels + 1, 5), squeeze=False)
    if summary:
        _plot_rounds(axes[0][0], result)
    if curve:  # without --curve targets: the timing panel only
        _plot_curve(axes[0][panels - 1], curve)
    s = result["setup"]
    finish_plot(fig, result, path, f"device={s['device']}, {s.get('precision')}")


def _plot_rounds(a, result: dict) -> None:
    summary = result["summary"]
    names = list(summary)
    meds = [summary[n]["wall_s"]["median"] for n in names]
    lows = [m - summary[n]["wall_s"]["min"] for n, m in zip(names, meds, strict=True)]
    highs = [summary[n]["wall_s"]["max"] - m for n, m in zip(names, meds, strict=True)]
    colors = ["C2" if "+slipstream" in n else "C0" for n in names]
    a.bar(names, meds, yerr=[lows, highs], capsize=4, color=colors)
    for i, n in enumerate(names):
        e = summary[n]
        label = f"AUC\n{e['val_auc']['median']:.4f}"
        if "time_saved" in e:
            label += (f"\nskip\n{e['skipped_share_of_samples']['median']:.1%}"
                      f"\nsaved\n{e['time_saved']['median']:.1%}")  # fmt: skip
        a.text(i, meds[i] / 2, label, ha="center", va="center", fontsize=6, color="white")
    a.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    a.set_ylabel("epoch time (s): median, min-max")
    a.set_title(f"{result['setup']['rounds']} interleaved rounds", fontsize=10)


def _plot_curve(b, curve: list[dict]) -> None:
    """AUC - fae's against the share of samples skipped, one point per run (D annotated)."""
    for select, color in (("stale", "C2"), ("random", "C1")):
        runs = [c for c in curve if c.get("select", "stale") == select]
        if not runs:
            continue
        xs = [c.get("skipped_share_of_samples", 0.0) for c in runs]
        b.scatter(xs, [c["auc_minus_fae"] for c in runs], color=color,
                  label=f"{select} inputs skipped")  # fmt: skip
        for c, x in zip(runs, xs, strict=True):
            b.annotate(f"D={c['target']}", (x, c["auc_minus_fae"]), fontsize=6)
    b.axhline(-0.0005, color="C3", ls="--", label="-0.0005 (target bound)")
    b.axhline(0, color="grey", lw=0.5)
    b.set_xlabel("share of the epoch's samples skipped")
    b.set_ylabel("val AUC - fae's (same seed)")
    b.legend(loc="lower left", fontsize=8)
    b.set_title("fae + slipstream: AUC cost against what was skipped", fontsize=10)


def main() -> None:
    p = training_args(__doc__)
    p.add_argument("--preset", default="dlrm-reference",
                   help="model and optimizer (dlrm-reference: plain SGD 0.1; criteo-kaggle: "
                        "row-wise Adagrad and Adam)")  # fmt: skip
    p.add_argument("--hot-budget", default="64MiB")
    p.add_argument("--profile-sample", type=float, default=0.5, help="share of inputs profiled")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--curve", type=float, nargs="*", default=[0.1, 0.3, 0.5],
                   help="targets D for the AUC curve (fae; none: no curve)")  # fmt: skip
    p.add_argument("--curve-seeds", type=int, default=1, help="seeds of each curve point")
    p.add_argument("--curve-compact", action="store_true",
                   help="curve runs with compaction "
                        "(default: what is left of each batch)")  # fmt: skip
    p.add_argument("--control", action="store_true",
                   help="curve also with --slipstream-select random: as many hot inputs "
                        "skipped, chosen at random")  # fmt: skip
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved timing rounds (0: the AUC curve only)")  # fmt: skip
    p.add_argument("--alpha", type=int, default=25,
                   help="stale lookups that make an input skippable, outside fae (all: 0)")  # fmt: skip
    p.add_argument("--schedules", nargs="+", default=["baseline", "fae", "hotline"])
    p.add_argument("--uncompacted", action="store_true",
                   help="also slipstream without compaction (what is left of each batch)")  # fmt: skip
    p.add_argument("--unpadded", action="store_true",
                   help="also slipstream without compaction nor padding (train.pad_multiple=0)")  # fmt: skip
    args = p.parse_args()
    if args.rounds < 0 or args.curve_seeds < 1:
        p.error("--rounds must be 0 or more and --curve-seeds 1 or more")
    if args.rounds == 0 and not args.curve:
        p.error("--rounds 0 runs the AUC curve alone: give it --curve targets")
    result = run(args)
    save(args, "slipstream", result, plot)


if __name__ == "__main__":
    main()
