"""Distributed training on this machine, and a scaling model for W machines.

Measured: one process (`hotrec train`) against two ranks (`hotrec train --nproc 2`) on the
synthetic criteo-kaggle profile with the criteo-kaggle preset, under the baseline schedule
and under fae with a hot-row replica (--hot-budget), interleaved for --rounds rounds:
samples/s, val AUC, and the bytes each rank sends per step by kind (result.json's
`distributed` section). The two ranks share this machine's cores, so the speed is a
correctness-and-overhead figure, not a speed-up.

Modelled: the bytes per step per rank of W ranks, from the model's own formulas, checked
against the measured W = 2 bytes; then a predicted step time for W = 2..64 at stated network
bandwidths (25, 100, 400 Gb/s) for the Kaggle and Terabyte presets' shapes:

  crossing lookups  c = (B / W) * K * (W - 1) / W      (K lookups per sample, rows spread evenly)
  ids               2 c * 8 bytes                      (to the owners for the gather and the update)
  rows, gradients   c * D * 4 bytes each
  dense all-reduce  2 (W - 1) / W * P                  (ring all-reduce of the P gradient bytes)
  hot replica (fae/hotline across ranks): lookups of hot rows (share h, from the popularity
  profile under the hot budget) leave the exchange; with row-wise Adagrad (the presets'),
  each hot lookup's (slot, gradient) goes to its row's owner, which sums them in one
  process's order and sends the sums of its share (U / W) of the U hot rows the global batch
  touched to every other rank: (W - 1) / W * ((B / W) * K * h + U) * (8 + D * 4)
  step time        = compute(B / W) + bytes / bandwidth + collectives * latency

compute(n) is this machine's measured one-process time per sample times n (perfect
compute scaling, no overlap of communication with compute, full-duplex links, 10 us per
collective): assumptions, stated in the JSON, that a real cluster only approaches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import (
    command_line,
    finish_plot,
    kaggle_like_dataset,
    machine,
    rate_summary,
    save,
    training_args,
)

KINDS = ("ids", "rows", "gradients", "dense", "hot")
WORLDS = (2, 4, 8, 16, 32, 64)
LATENCY_S = 10e-6  # per collective
COLLECTIVES = 8  # per step: 2 count + 2 data exchanges for the gather, the same for the update


def hotrec(args: list[str], cwd: Path) -> None:
    """One process uses every core (torch's default threads); --nproc gives each rank one."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    run = subprocess.run([sys.executable, "-m", "hotrec", *args], cwd=cwd, env=env,
                         capture_output=True, text=True)  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"hotrec {' '.join(args)} failed:\n{run.stderr[-3000:]}")


def measure(args: argparse.Namespace, data: Path) -> dict:
    """One process against two ranks, interleaved; medians with min-max."""
    variants = {"1 process": [], "2 ranks": [], "1 process fae": [], "2 ranks fae": []}
    for r in range(args.rounds):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for v in order:
            run_dir = args.workdir / f"run-dist-{v.replace(' ', '-')}"
            extra = ["--nproc", "2"] if v.startswith("2 ranks") else []
            if v.endswith("fae"):
                extra += ["--schedule", "fae", "--hot-budget", args.hot_budget]
            hotrec(["train", "--data", str(data), "--preset", args.preset, "--run-dir",
                    str(run_dir), "--overwrite", "--set", "train.checkpoint_every=0",
                    *extra], cwd=Path.cwd())  # fmt: skip
            res = json.loads((run_dir / "result.json").read_text())
            variants[v].append(res)
            print(f"round {r} {v}: {res['samples_per_s']:,.0f} samples/s, "
                  f"val AUC {res['val']['auc']:.5f}")  # fmt: skip
    base = [x["samples_per_s"] for x in variants["1 process"]]
    out = {}
    for v, rs in variants.items():
        rates = [x["samples_per_s"] for x in rs]
        out[v] = {
            **rate_summary(rates, base, "vs_one_process"),
            "val_auc": [round(x["val"]["auc"], 6) for x in rs],
            "steps": rs[-1]["steps"],
            "samples": rs[-1]["samples"],
            "time_split_s": rs[-1]["time_split_s"],
            **({"distributed": rs[-1]["distributed"]} if "distributed" in rs[-1] else {}),
        }
    return out


def preset_shape(preset: str, schema) -> dict:
    """B, D, K and the dense gradient bytes P of a preset's model on this schema."""
    from hotrec.config import load_config
    from hotrec.models.builders import build_dlrm

    cfg = load_config(preset, [])
    model = build_dlrm(schema, cfg.model, cfg.optim, 0)
    dense = sum(p.numel() * p.element_size() for p in model.dense_parameters())
    return {"preset": preset, "batch": cfg.data.batch_size, "dim": cfg.model.embedding_dim,
            "lookups": schema.num_tables, "dense_bytes": dense}  # fmt: skip


def hot_profile(ds, prof, budget: str, dim: int, batch: int) -> dict:
    """Hot lookup share h under the budget (rows of `dim`) and hot rows U touched per global
    batch, from one popularity profile `prof` of the dataset `ds`."""
    from hotrec.placement.hotset import HotSet
    from hotrec.placement.popularity import parse_bytes

    train = ds.split("train")
    hot = HotSet.from_profile(prof, parse_bytes(budget), dim)
    is_hot = np.zeros(int(ds.schema.total_rows), dtype=bool)
    is_hot[np.asarray(hot.rows)] = True
    offsets = np.asarray(ds.schema.table_offsets)
    touched, shares = [], []
    for a in range(0, min(len(train), 20 * batch), batch):
        ids = np.asarray(train.sparse[a : a + batch], dtype=np.int64) + offsets
        touched.append(len(np.unique(ids[is_hot[ids]])))
        shares.append(float(is_hot[ids].mean()))
    return {"budget": budget, "hot_rows": int(len(hot.rows)),
            "lookup_share": float(np.mean(shares)),  # counted on whole batches, not the
            # profile's sample (where it is an upper bound: the hot set was fitted to it)
            "hot_rows_per_batch": float(np.mean(touched))}  # fmt: skip


def bytes_per_step(shape: dict, world: int, hot: dict | None = None) -> dict:
    """The model's bytes per step per rank by kind."""
    b, d, k, w = shape["batch"], shape["dim"], shape["lookups"], world
    crossing = b / w * k * (w - 1) / w * (1 - (hot["lookup_share"] if hot else 0.0))
    out = {"ids": 2 * crossing * 8, "rows": crossing * d * 4, "gradients": crossing * d * 4,
           "dense": 2 * (w - 1) / w * shape["dense_bytes"]}  # fmt: skip
    if hot:
        lookups = b / w * k * hot["lookup_share"]
        out["hot"] = (w - 1) / w * (lookups + hot["hot_rows_per_batch"]) * (8 + d * 4)
    return {k: round(v) for k, v in out.items()}


def scaling(shape: dict, per_sample_s: float, hot: dict, bandwidths: list[float]) -> list[dict]:
    rows = []
    for w in WORLDS:
        for replica in (False, True):
            sent = bytes_per_step(shape, w, hot if replica else None)
            total = sum(sent.values())
            compute = per_sample_s * shape["batch"] / w
            for gbps in bandwidths:
                comm = total * 8 / (gbps * 1e9) + COLLECTIVES * LATENCY_S
                rows.append({"world": w, "hot_replica": replica, "gbps": gbps,
                             "bytes_per_step": total, "compute_s": compute, "comm_s": comm,
                             "step_s": compute + comm, "comm_share": comm / (compute + comm),
                             "samples_per_s": shape["batch"] / (compute + comm)})  # fmt: skip
    return rows


def run(args: argparse.Namespace) -> dict:
    from hotrec.data.format import open_dataset

    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    measured = measure(args, data)
    schema = open_dataset(data).schema
    one = measured["1 process"]
    split = one["time_split_s"]
    compute = sum(split.get(k, 0.0) for k in ("data", "transfer", "embedding", "mlp", "optimizer"))
    per_sample = compute / one["samples"]
    kaggle = preset_shape("criteo-kaggle", schema)
    terabyte = preset_shape("criteo-terabyte", schema)
    from hotrec.placement.popularity import PopularityProfiler

    ds = open_dataset(data)
    prof = PopularityProfiler(0.05, 0).fit(ds.split("train").sparse, schema.table_rows)
    hots = {s["preset"]: hot_profile(ds, prof, args.hot_budget, s["dim"], s["batch"])
            for s in (kaggle, terabyte)}  # fmt: skip
    check = {}
    for variant, hot in (("2 ranks", None), ("2 ranks fae", hots[kaggle["preset"]])):
        two = measured[variant].get("distributed", {}).get("bytes_per_step", {})
        predicted = bytes_per_step(kaggle, 2, hot)
        check[variant] = {
            kind: {"measured": two.get(kind), "model": predicted.get(kind, 0),
                   "ratio": round(two[kind] / predicted[kind], 3)
                   if two.get(kind) and predicted.get(kind) else None}
            for kind in KINDS
        }  # fmt: skip
    models = {}
    for shape in (kaggle, terabyte):
        hot = hots[shape["preset"]]
        scale = kaggle["dense_bytes"] and shape["dense_bytes"] / kaggle["dense_bytes"]
        ps = per_sample * max(1.0, scale)  # a larger network: compute scaled by its weights
        models[shape["preset"]] = {"shape": shape, "hot": hot, "compute_per_sample_s": ps,
                                   "rows": scaling(shape, ps, hot, args.gbps)}  # fmt: skip
    return {
        "benchmark": "distributed",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "preset": args.preset,
            "rounds": args.rounds,
            "device": args.device,
            "hot_budget": args.hot_budget,
        },  # fmt: skip
        "measured": measured,
        "model_check_w2": check,
        "assumptions": {
            "compute": "the measured one-process time per sample (data, transfer, embedding, "
            "mlp and optimizer sections of the time split) x B / W: perfect compute scaling",
            "terabyte_compute": "the Kaggle figure x the ratio of the networks' weights",
            "network": "full-duplex links at the stated bandwidth, no overlap with compute, "
            f"{LATENCY_S * 1e6:.0f} us per collective, {COLLECTIVES} collectives per step",
            "rows": "ids spread evenly over ranks (row r on rank r mod W)",
            "hot_replica": "fae/hotline across ranks: hot lookups stay local; their gradients "
            "go to the rows' owners, whose per-row sums go to every rank (row-wise Adagrad)",
            "data": "the hot share and touched hot rows come from the synthetic Kaggle "
            "profile for both presets (no Terabyte data here)",
        },
        "scaling": models,
        "gpu": "not run: no GPU was lent to this task" if args.device != "cuda" else None,
    }


def plot(result: dict, path: Path) -> None:
    from common import start_plot

    plt = start_plot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    m = result["measured"]
    names = list(m)
    med = [m[n]["samples_per_s"] for n in names]
    lo = [x - m[n]["samples_per_s_range"][0] for x, n in zip(med, names, strict=True)]
    hi = [m[n]["samples_per_s_range"][1] - x for x, n in zip(med, names, strict=True)]
    axes[0].bar(names, med, yerr=[lo, hi], capsize=3)
    axes[0].set_ylabel("samples/s (median, min-max)")
    axes[0].set_title("this machine: 1 process vs 2 ranks on its cores", fontsize=9)
    for ax, preset in zip(axes[1:], result["scaling"], strict=True):
        rows = result["scaling"][preset]["rows"]
        for gbps in sorted({r["gbps"] for r in rows}):
            for replica, style in ((False, "-"), (True, "--")):
                pts = [r for r in rows if r["gbps"] == gbps and r["hot_replica"] == replica]
                ax.plot([r["world"] for r in pts], [r["samples_per_s"] for r in pts], style,
                        marker="o", ms=3,
                        label=f"{gbps:g} Gb/s{' + hot replica' if replica else ''}")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("ranks W")
        ax.set_ylabel("predicted samples/s")
        ax.set_title(f"model: {preset}", fontsize=9)
        ax.legend(fontsize=7)
    finish_plot(fig, result, path,
                "predictions from measured bytes and compute (see assumptions)", "; ")  # fmt: skip


def main() -> None:
    p = training_args(__doc__)
    p.set_defaults(rows=200_000, device="cpu")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--preset", default="criteo-kaggle")
    p.add_argument("--hot-budget", default="16MiB", help="hot rows per rank (replica model)")
    p.add_argument("--gbps", type=float, nargs="+", default=[25.0, 100.0, 400.0])
    args = p.parse_args()
    result = run(args)
    for n, v in result["measured"].items():
        print(f"{n:10s} {v['samples_per_s']:>9,.0f} samples/s {v['vs_one_process']['median']:.2f}x "
              f"val AUC {v['val_auc']}")  # fmt: skip
    print("bytes per step at W=2, measured / model:", result["model_check_w2"])
    save(args, "distributed", result, plot)


if __name__ == "__main__":
    main()
