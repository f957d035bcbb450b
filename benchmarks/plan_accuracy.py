"""How well `hotrec plan` predicts: predicted against measured step time per schedule.

For each device (cpu and emulated here; cuda in the GPU check), measures the plan's rates on
the synthetic criteo-kaggle-profile dataset, then trains every schedule (fae and hotline at
one hot budget) for --steps steps, interleaved over --rounds rounds, and reports predicted /
measured step time (median over rounds) with the recommendation and whether it was the
fastest measured. Aim: within 25%.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from common import (
    command_line,
    finish_plot,
    kaggle_like_dataset,
    machine,
    save,
    start_plot,
    training_args,
)
from hotrec.config import load_config, replace
from hotrec.data.format import open_dataset
from hotrec.placement.planner import SCHEDULES, plan
from hotrec.placement.popularity import parse_bytes
from hotrec.training.plan import measure
from hotrec.training.trainer import Trainer

AIM = 0.25


def measured_step_s(cfg, schedule: str, steps: int, workdir: Path) -> float:
    """Median seconds per training step of `schedule` over `steps` steps after two warm-up ones
    (the loader's prepared items, as a run gets them)."""
    run = replace(cfg, placement={"schedule": schedule},
                  train={"checkpoint_every": 0, "eval_every": 0})  # fmt: skip
    trainer = Trainer(run, workdir / f"run-{schedule}")
    items = trainer.schedule.batches(0)
    times = []
    for i, item in zip(range(steps + 2), items, strict=False):
        trainer.state.step = i
        start = time.perf_counter()
        trainer.step(item)
        if i >= 2:
            times.append(time.perf_counter() - start)
    items.close()
    return statistics.median(times)


def run(args) -> dict:
    data = kaggle_like_dataset(args.workdir, args.rows, args.max_table_rows)
    dataset = open_dataset(data)
    budget = parse_bytes(args.hot_budget)
    devices = args.devices.split(",")
    out = {}
    for device in devices:
        cfg = load_config("dlrm-reference", [f"data.path={str(data)!r}",
                                            f"train.device={device!r}",
                                            f"placement.hot_budget={args.hot_budget!r}"])  # fmt: skip
        shape, rates, pops = measure(cfg, dataset, [budget])
        planned = plan(shape, rates, pops)
        predicted = {p.schedule: p for p in planned["predictions"]}
        best = planned["recommended"].schedule
        measured: dict[str, list[float]] = {s: [] for s in SCHEDULES}
        with tempfile.TemporaryDirectory(prefix="plan-accuracy-") as tmp:
            for r in range(args.rounds):
                for s in SCHEDULES if r % 2 == 0 else SCHEDULES[::-1]:
                    measured[s].append(measured_step_s(cfg, s, args.steps, Path(tmp)))
                print(f"{device} round {r}: " + ", ".join(
                    f"{s} {v[-1] * 1e3:.1f} ms" for s, v in measured.items()))  # fmt: skip
        rows = {}
        for s in SCHEDULES:
            m = statistics.median(measured[s])
            p = predicted[s].step_s
            rows[s] = {
                "predicted_ms": None if p is None else round(p * 1e3, 3),
                "measured_ms": round(m * 1e3, 3),
                "measured_ms_range": [
                    round(min(measured[s]) * 1e3, 3),
                    round(max(measured[s]) * 1e3, 3),
                ],  # fmt: skip
                "predicted_over_measured": None if p is None else round(p / m, 3),
            }
        fastest = min(rows, key=lambda s: rows[s]["measured_ms"])
        ratios = [
            v["predicted_over_measured"] for v in rows.values() if v["predicted_over_measured"]
        ]
        out[device] = {
            "rates": vars(rates),
            "popularity": [vars(p) for p in pops],
            "schedules": rows,
            "recommended": best,
            "fastest_measured": fastest,
            "recommended_within_5pct_of_fastest": rows[best]["measured_ms"]
            <= 1.05 * rows[fastest]["measured_ms"],
            "within_aim": all(abs(x - 1) <= AIM for x in ratios),
        }
    return {
        "benchmark": "plan_accuracy",
        "command": command_line(),
        "machine": machine(),
        "setup": {
            "rows": args.rows,
            "max_table_rows": args.max_table_rows,
            "hot_budget": args.hot_budget,
            "steps": args.steps,
            "rounds": args.rounds,
            "aim": f"predicted within {AIM:.0%} of measured",
        },  # fmt: skip
        "devices": out,
    }


def plot(result: dict, path: Path) -> None:
    plt = start_plot()
    devices = list(result["devices"])
    fig, axes = plt.subplots(1, len(devices), figsize=(5.5 * len(devices), 4), squeeze=False)
    for ax, device in zip(axes[0], devices, strict=True):
        rows = result["devices"][device]["schedules"]
        names = list(rows)
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], [rows[n]["predicted_ms"] or 0 for n in names], 0.4,
               label="predicted")  # fmt: skip
        ax.bar([i + 0.2 for i in x], [rows[n]["measured_ms"] for n in names], 0.4,
               label="measured (median)")  # fmt: skip
        ax.set_xticks(list(x), names)
        ax.set_ylabel("ms per step")
        rec = result["devices"][device]["recommended"]
        ax.set_title(f"{device}: recommended {rec}", fontsize=10)
        ax.legend(fontsize=8)
    s = result["setup"]
    finish_plot(fig, result, path, f"{s['rows']:,} rows, hot budget {s['hot_budget']}")


def main() -> None:
    p = training_args(__doc__)
    p.set_defaults(rows=300_000)
    p.add_argument("--devices", default="cpu,emulated", help="comma list (cuda on a GPU)")
    p.add_argument("--hot-budget", default="16MiB")
    p.add_argument("--steps", type=int, default=30, help="timed steps per schedule per round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    args.device = args.devices.replace(",", "_")
    result = run(args)
    for device, r in result["devices"].items():
        for s, v in r["schedules"].items():
            print(f"{device:9s} {s:12s} predicted {v['predicted_ms']} ms, measured "
                  f"{v['measured_ms']} ms ({v['predicted_over_measured']})")  # fmt: skip
        print(f"{device}: recommended {r['recommended']}, fastest {r['fastest_measured']}")
    save(args, "plan_accuracy", result, plot)


if __name__ == "__main__":
    main()
