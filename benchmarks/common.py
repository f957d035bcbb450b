"""Helpers shared by the benchmark scripts: machine description and result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import polars

    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "polars": polars.__version__,
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return info


def kaggle_like_dataset(workdir: Path, rows: int, max_table_rows: int) -> Path:
    """The synthetic criteo-kaggle-profile dataset the training benchmarks share (made once)."""
    from hotrec.data.format import META
    from hotrec.data.synthetic import synthesize

    data = workdir / f"kaggle-{rows}-cap{max_table_rows}"
    if not (data / META).exists():
        synthesize(data, profile="criteo-kaggle", rows=rows, max_table_rows=max_table_rows, seed=0)
    return data


def commit_of(src: Path) -> str | None:
    """The short git commit of the tree that holds `src`, for results comparing two trees."""
    import subprocess

    out = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    return out.stdout.strip() or None


def ratio_summary(after: list[float], before: list[float]) -> dict:
    """Per-round ratios after/before of paired measurements: median, min, max."""
    import statistics

    ratios = [a / b for a, b in zip(after, before, strict=True)]
    return {"median": round(statistics.median(ratios), 3), "min": round(min(ratios), 3),
            "max": round(max(ratios), 3)}  # fmt: skip


def spread(values: list[float], digits: int = 4) -> dict:
    """Median, min and max of a measurement repeated over rounds."""
    import statistics

    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits)}  # fmt: skip


def rate_summary(rates: list[float], base: list[float], versus: str) -> dict:
    """Median samples/s with min-max over rounds, and the per-round ratios to `base`."""
    import statistics

    return {
        "samples_per_s": round(statistics.median(rates), 1),
        "samples_per_s_range": [round(min(rates), 1), round(max(rates), 1)],
        versus: ratio_summary(rates, base),
    }


def start_plot():
    """A headless matplotlib pyplot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def finish_plot(fig, result: dict, path: Path, details: str = "", sep: str = ", ") -> None:
    """Title the figure with the machine (and `details`), lay it out and write it to `path`."""
    m = result["machine"]
    fig.suptitle(
        f"{m['cpu']} ({m['cores']} cores)" + (sep + details if details else ""), fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def command_line() -> str:
    """The command that reproduces this run."""
    return "python " + " ".join(shlex.quote(a) for a in sys.argv)


def write_result(name: str, result: dict, out_dir: Path = RESULTS) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def training_args(doc: str) -> argparse.ArgumentParser:
    """Options every training benchmark takes; each script adds its own."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="synthetic dataset rows")
    p.add_argument("--max-table-rows", type=int, default=1_000_000, help="cap on table rows")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        choices=("cpu", "cuda", "emulated"),
        help="where the networks run (default: cuda when present, else cpu; emulated: the CPU "
        "made as strict as CUDA, for a CI-sized run of the GPU check)",
    )
    p.add_argument("--workdir", type=Path, default=Path("benchmarks/work"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--name", default=None, help="result file name (default <benchmark>_<device>)")
    return p


def save(args: argparse.Namespace, benchmark: str, result: dict, plot) -> None:
    """JSON + PNG under args.out, named <benchmark>_<device> unless --name, and the command."""
    name = args.name or f"{benchmark}_{args.device}"
    path = write_result(name, result, args.out)
    plot(result, args.out / f"{name}.png")
    print(f"wrote {path} and {name}.png\nreproduce: {result['command']}")
