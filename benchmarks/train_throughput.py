"""Training throughput of the dlrm-reference preset against a plain-PyTorch loop of the same model.

Side by side in one process, interleaved over several rounds (the machine is shared and noisy):
  * hotrec step   : Trainer.step on pre-loaded batches (fused store, row-wise sparse SGD)
  * plain PyTorch : 26 nn.EmbeddingBag(sparse=True) + the same MLPs/interaction + torch.optim.SGD
                    on the same pre-loaded batches
  * hotrec e2e    : Trainer.fit from the memory-mapped dataset (loader thread, shuffling included)
each hotrec variant in fp32 and in bf16 mixed precision (--precision bf16). Reports samples/s,
the ratios step/plain and e2e/step, hotrec's time split, and (quality check) val AUC after one
full epoch in fp32 and in bf16 from the same seed.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from common import command_line, finish_plot, kaggle_like_dataset, machine, save, training_args
from hotrec.config import load_config, replace
from hotrec.models.interactions import DotInteraction
from hotrec.models.mlp import mlp
from hotrec.training.runs import start_run
from hotrec.training.trainer import Trainer

TARGET_STEP_VS_PLAIN = 1.4
TARGET_E2E_VS_STEP = 0.9
PRECISIONS = ("fp32", "bf16")


class PlainDLRM(nn.Module):
    """The reference: one nn.EmbeddingBag per table with sparse gradients, as tutorials write it."""

    def __init__(self, table_rows: list[int], num_dense: int, cfg) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.tables = nn.ModuleList(
            nn.EmbeddingBag(n, d, mode="sum", sparse=True) for n in table_rows
        )
        self.bottom = mlp(num_dense, cfg.bottom_mlp, last_activation=True)
        self.interaction = DotInteraction(len(table_rows), d)
        self.top = mlp(self.interaction.out_features, cfg.top_mlp, last_activation=False)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        e = torch.stack([t(sparse[:, i : i + 1]) for i, t in enumerate(self.tables)], dim=1)
        return self.top(self.interaction(x, e)).squeeze(1)


def time_steps(step, batches, device) -> float:
    """Samples/s of `step` over `batches` (after two warm-up steps), the device's queued
    work included."""
    for b in batches[:2]:
        step(b)
    device.synchronize()
    start = time.perf_counter()
    for b in batches:
        step(b)
    device.synchronize()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def paired(rates: dict[str, list[float]], a: str, b: str) -> float:
    return round(statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True)), 3)


def plain_step_fn(trainer: Trainer, lr: float, where: torch.device):
    schema = trainer.dataset.schema
    model = PlainDLRM(schema.table_rows, schema.num_dense, trainer.cfg.model).to(where)
    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def step(batch):
        loss = F.binary_cross_entropy_with_logits(model(batch.dense, batch.sparse), batch.label)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def run(args: argparse.Namespace) -> dict:
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    base = [
        f"data.path={str(data)!r}",
        f"train.device={args.device!r}",
        "train.checkpoint_every=0",
        f"data.batch_size={args.batch_size}",
    ]
    # bf16 autocast is not emulated: the emulated device (the GPU check's CI run) runs fp32 only
    precisions = PRECISIONS if args.device != "emulated" else ("fp32",)
    cfgs = {p: load_config("dlrm-reference", base + [f"train.precision={p!r}"]) for p in precisions}
    trainers = {
        p: start_run(c, args.workdir / f"run-step-{p}", overwrite=True) for p, c in cfgs.items()
    }
    loader = trainers["fp32"].train_loader
    batches = [b for b, _ in zip(loader.epoch(0), range(args.steps), strict=False)]  # on host
    device = trainers["fp32"].device
    # the reference runs where a plain PyTorch user would run it: on the GPU when there is
    # one (batches copied there beforehand), else on the CPU (also for the emulated device)
    plain_on = device.torch_device if device.name == "cuda" else torch.device("cpu")
    plain_batches = [b.to(plain_on) for b in batches]
    plain = plain_step_fn(trainers["fp32"], cfgs["fp32"].optim.sparse_lr, plain_on)
    rates: dict[str, list[float]] = {}
    splits: dict[str, dict] = {}
    for r in range(args.rounds):
        rates.setdefault("plain_pytorch", []).append(time_steps(plain, plain_batches, device))
        for p in precisions:
            rate = time_steps(trainers[p].step, batches, device)
            rates.setdefault(f"hotrec_step_{p}", []).append(rate)
            cfg = replace(
                cfgs[p], train={"max_steps": args.steps, "seed": r}, data={"max_eval_rows": 1}
            )
            result = start_run(cfg, args.workdir / f"run-e2e-{p}", overwrite=True).fit()
            rates.setdefault(f"hotrec_e2e_{p}", []).append(result["samples_per_s"])
            keep = ("data", "embedding", "mlp", "optimizer")
            splits[p] = {k: v for k, v in result["time_split_s"].items() if k in keep}
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in rates.items()))
    med = {k: statistics.median(v) for k, v in rates.items()}
    quality = {}
    for p in precisions if args.quality_epochs else ():
        cfg = replace(cfgs[p], train={"epochs": args.quality_epochs})
        result = start_run(cfg, args.workdir / f"run-quality-{p}", overwrite=True).fit()
        quality[p] = {
            "val_auc": round(result["val"]["auc"], 5),
            "val_logloss": round(result["val"]["logloss"], 5),
            "samples_per_s": result["samples_per_s"],
            "epochs": args.quality_epochs,
        }
        print(f"quality {p}: {quality[p]}")
    return {
        "benchmark": "train_throughput",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "preset": "dlrm-reference",
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "batch_size": args.batch_size,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
            "embedding_rows": trainers["fp32"].dataset.schema.total_rows,
            "device": str(trainers["fp32"].device),
        },
        "samples_per_s": {k: round(v, 1) for k, v in med.items()},
        "samples_per_s_all_rounds": {k: [round(x, 1) for x in v] for k, v in rates.items()},
        # Ratios are medians of per-round ratios: each round runs the variants back to back, so
        # load from other processes hits both sides of a ratio alike.
        "ratios": {
            **{
                f"step_{p}_vs_plain": paired(rates, f"hotrec_step_{p}", "plain_pytorch")
                for p in precisions
            },
            **{
                f"e2e_vs_step_{p}": paired(rates, f"hotrec_e2e_{p}", f"hotrec_step_{p}")
                for p in precisions
            },
        },
        "targets": {"step_vs_plain": TARGET_STEP_VS_PLAIN, "e2e_vs_step": TARGET_E2E_VS_STEP},
        "e2e_time_split_s": splits,
        "quality_one_epoch": quality,
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    rates = result["samples_per_s"]
    names = list(rates)
    a.barh(
        names,
        [rates[n] for n in names],
        color=["C7" if n.startswith("plain") else "C0" for n in names],
    )
    for i, n in enumerate(names):
        a.text(
            rates[n], i, f" {rates[n] / rates['plain_pytorch']:.2f}x plain", va="center", fontsize=8
        )
    a.set_xlabel("samples/s (median of rounds)")
    a.set_title(f"dlrm-reference preset, batch {result['setup']['batch_size']}", fontsize=10)
    splits = result["e2e_time_split_s"]
    sections = sorted({k for v in splits.values() for k in v})
    left = [0.0] * len(splits)
    for sec in sections:
        vals = [splits[p].get(sec, 0.0) for p in splits]
        b.barh(list(splits), vals, left=left, label=sec)
        left = [x + y for x, y in zip(left, vals, strict=True)]
    b.set_xlabel("seconds in the end-to-end run")
    b.set_title("hotrec end-to-end time split", fontsize=10)
    b.legend(fontsize=8)
    finish_plot(fig, result, path)


def main() -> None:
    p = training_args(__doc__)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=150, help="steps per variant per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--quality-epochs", type=int, default=1, help="epochs of the fp32/bf16 AUC check (0 = skip)"
    )
    args = p.parse_args()
    result = run(args)
    print(f"samples/s: {result['samples_per_s']}")
    print(f"ratios: {result['ratios']} (targets {result['targets']})")
    save(args, "train_throughput", result, plot)


if __name__ == "__main__":
    main()
