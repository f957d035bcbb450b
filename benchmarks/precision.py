"""`--precision auto` against fp32 on `make demo`'s training: the criteo-kaggle preset on the
demo's synthetic dataset (criteo-kaggle profile, 4M rows, cardinalities x0.01).

Speed: end-to-end training (Trainer.fit from the memory-mapped dataset, loader included) for
--steps steps, fp32 and auto interleaved (fp32, auto, fp32, auto, ...) over --rounds rounds;
medians with min-max, and the per-round ratio auto / fp32. Quality: one full epoch of each
from the same seed, test AUC. auto is what this machine resolves it to (bf16 on CPUs with
AMX or AVX512-BF16 and CUDA devices of compute capability 8.0+, else fp32: then the two
variants are the same and the ratio is about 1).
"""

from __future__ import annotations

from common import command_line, machine, rate_summary, save, start_plot, training_args
from hotrec.cli.demo import DEMO_ROWS, DEMO_SCALE
from hotrec.config import load_config, replace
from hotrec.data.format import META
from hotrec.data.synthetic import synthesize
from hotrec.device import make_device
from hotrec.training.runs import start_run
from hotrec.training.steps import resolve_precision

TARGET_SPEEDUP = 1.8  # auto vs fp32 samples/s on an AMX machine
TARGET_AUC_GAP = 0.0005  # |test AUC auto - fp32|
VARIANTS = ("fp32", "auto")


def dataset(args):
    data = args.workdir / f"demo-{args.rows}-x{DEMO_SCALE}"
    if not (data / META).exists():
        synthesize(data, profile="criteo-kaggle", rows=args.rows, scale=DEMO_SCALE, seed=0)
    return data


def run(args) -> dict:
    data = dataset(args)
    base = [f"data.path={str(data)!r}", f"train.device={args.device!r}", "train.checkpoint_every=0"]
    cfgs = {v: load_config("criteo-kaggle", base + [f"train.precision={v!r}"]) for v in VARIANTS}
    picked, why = resolve_precision("auto", make_device(args.device))
    print(f"auto on this machine: {picked} ({why})")
    rates: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(args.rounds):
        for v in VARIANTS:
            cfg = replace(cfgs[v], train={"max_steps": args.steps, "eval_every": 0},
                          data={"max_eval_rows": 1})  # fmt: skip
            result = start_run(cfg, args.workdir / f"run-precision-{v}", overwrite=True).fit()
            rates[v].append(result["samples_per_s"])
        print(f"round {r}: " + ", ".join(f"{v} {rates[v][-1]:,.0f}" for v in VARIANTS))
    quality = {}
    for v in VARIANTS if args.quality else ():
        cfg = replace(cfgs[v], train={"epochs": 1})
        result = start_run(cfg, args.workdir / f"run-precision-epoch-{v}", overwrite=True).fit()
        quality[v] = {
            "precision": result["precision"],
            "test_auc": round(result["test"]["auc"], 5),
            "val_auc": round(result["val"]["auc"], 5),
            "samples_per_s": result["samples_per_s"],
        }
        print(f"one epoch {v}: {quality[v]}")
    speed = {v: rate_summary(rates[v], rates["fp32"], "vs_fp32") for v in VARIANTS}
    gap = abs(quality["auto"]["test_auc"] - quality["fp32"]["test_auc"]) if quality else None
    return {
        "benchmark": "precision",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "preset": "criteo-kaggle",
            "rows": args.rows,
            "scale": DEMO_SCALE,
            "steps": args.steps,
            "rounds": args.rounds,
            "device": args.device,
        },  # fmt: skip
        "auto_resolves_to": {"precision": picked, "why": why},
        "samples_per_s": speed,
        "rounds": rates,
        "one_epoch": quality,
        "test_auc_gap": None if gap is None else round(gap, 5),
        "targets": {
            "speedup": TARGET_SPEEDUP,
            "speedup_met": speed["auto"]["vs_fp32"]["median"] >= TARGET_SPEEDUP,
            "auc_gap": TARGET_AUC_GAP,
            "auc_gap_met": None if gap is None else gap <= TARGET_AUC_GAP,
        },
    }


def plot(result: dict, path) -> None:
    plt = start_plot()
    fig, ax = plt.subplots(figsize=(6, 4))
    speed = result["samples_per_s"]
    for i, v in enumerate(VARIANTS):
        lo, hi = speed[v]["samples_per_s_range"]
        med = speed[v]["samples_per_s"]
        ax.bar(i, med, color="#4c72b0" if v == "fp32" else "#dd8452")
        ax.errorbar(i, med, yerr=[[med - lo], [hi - med]], color="black", capsize=6)
        auc = result["one_epoch"].get(v, {}).get("test_auc")
        label = f"{med:,.0f}/s" + (f"\ntest AUC {auc:.5f}" if auc else "")
        ax.text(i, med / 2, label, ha="center", va="center", color="white")
    auto = result["auto_resolves_to"]["precision"]
    ax.set_xticks(range(len(VARIANTS)), ["fp32", f"auto ({auto})"])
    ratio = speed["auto"]["vs_fp32"]
    ax.set_title(f"make demo's training: auto / fp32 = {ratio['median']:.2f}x "
                 f"({ratio['min']:.2f}-{ratio['max']:.2f})")  # fmt: skip
    ax.set_ylabel("samples/s (median, min-max over rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = training_args(__doc__)
    p.set_defaults(rows=DEMO_ROWS)
    p.add_argument("--steps", type=int, default=500, help="training steps per timed run")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    p.add_argument("--no-quality", dest="quality", action="store_false",
                   help="skip the one-epoch AUC comparison")  # fmt: skip
    args = p.parse_args()
    result = run(args)
    save(args, "precision", result, plot)
    s = result["samples_per_s"]["auto"]["vs_fp32"]
    print(f"auto / fp32: {s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f}); "
          f"test AUC gap {result['test_auc_gap']}")  # fmt: skip


if __name__ == "__main__":
    main()
