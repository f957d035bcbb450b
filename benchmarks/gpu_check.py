"""The GPU check: one command that measures what a GPU machine is lent for, in minutes.

Runs, in order, each as its own process with what is left of the time budget:
  1. tests     the CUDA test subset: every schedule's parity against the CPU (deterministic
               kernels on) and its sync budget (syncs counted per step by the device, any
               hidden one raised by torch's sync debug mode);
  2. schedules baseline, device_only, fae and hotline, each with and without Slipstream, on
               tables at least 20x the hot budget (benchmarks/schedules.py);
  3. slipstream fae (and hotline) without and with Slipstream's compaction, interleaved:
               epoch time saved against the share of samples skipped (benchmarks/slipstream.py);
  4. training  the training-throughput benchmark (benchmarks/train_throughput.py);
  5. serving   the serving profile and load sweep (benchmarks/serving.py).
Writes each step's JSON + PNG as <name>_<suffix> (suffix "gpu" on CUDA) and a summary
gpu_check_<suffix>.json with the device's name, every step's status, wall time and command.

`--device emulated` runs every step at CI size on the CPU made as strict as CUDA (CI runs it
on every change, so the check cannot rot before a GPU is there to run it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from common import RESULTS, command_line, machine, write_result

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def split(*parts: str) -> list[str]:
    """Command-line words of `parts` (none holds a space)."""
    return " ".join(parts).split()


# Sizes: full on a GPU (under 8 minutes on one H100), ci on the emulated device.
SIZES = {
    "full": {
        "tests": ["-k", "cuda"],
        "schedules": split("--rows 1000000 --max-table-rows 1000000 --hot-budget 16MiB",
                           "--rounds 1 --sync-steps 20"),
        "training": split("--rows 300000 --steps 100 --rounds 3 --quality-epochs 0"),
        "serving": split("--rows 100000 --points 4 --duration 4"),
        "slipstream": split("--rows 300000 --rounds 2 --schedules fae hotline --curve"),
    },
    "ci": {
        "tests": ["-k", "emulated and sync_budget"],
        "schedules": split("--rows 6000 --max-table-rows 3000 --hot-budget 16KiB --rounds 1",
                           "--sync-steps 3"),
        "slipstream": split("--rows 20000 --max-table-rows 3000 --hot-budget 16KiB --rounds 1",
                            "--schedules fae --curve"),
        "training": split("--rows 6000 --max-table-rows 3000 --batch-size 256 --steps 4",
                          "--rounds 1 --quality-epochs 0"),
        "serving": split("--rows 3000 --max-table-rows 500 --dhe-hashes 8 --points 1",
                         "--duration 0.5 --queries 40"),
    },
}  # fmt: skip
MIN_TABLES_OVER_BUDGET = 20  # the hybrid case is real only when the tables dwarf the hot set


def step_commands(args: argparse.Namespace, suffix: str) -> list[tuple[str, list[str]]]:
    size = SIZES[args.size]
    py = [sys.executable]
    common = ["--out", str(args.out), "--workdir", str(args.workdir)]
    junit = args.workdir / f"tests_{suffix}.xml"
    serving_devices = "cpu,cuda" if args.device == "cuda" else "cpu"
    return [
        (
            "tests",
            py
            + [
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/parity/test_emulated_device.py",
                f"--junitxml={junit}",
                *size["tests"],
            ],
        ),  # fmt: skip
        (
            "schedules",
            py
            + [
                str(HERE / "schedules.py"),
                "--device",
                args.device,
                "--slipstream",
                "--name",
                f"schedules_{suffix}",
                *common,
                *size["schedules"],
            ],
        ),  # fmt: skip
        (
            "slipstream",
            py
            + [
                str(HERE / "slipstream.py"),
                "--device",
                args.device,
                "--name",
                f"slipstream_{suffix}",
                *common,
                *size["slipstream"],
            ],
        ),  # fmt: skip
        (
            "training",
            py
            + [
                str(HERE / "train_throughput.py"),
                "--device",
                args.device,
                "--name",
                f"train_throughput_{suffix}",
                *common,
                *size["training"],
            ],
        ),  # fmt: skip
        (
            "serving",
            py
            + [
                str(HERE / "serving.py"),
                "--devices",
                serving_devices,
                "--device",
                suffix,
                "--name",
                f"serving_{suffix}",
                "--out",
                str(args.out),
                "--workdir",
                str(args.workdir / "serving"),
                *size["serving"],
            ],
        ),  # fmt: skip
    ]


def test_counts(junit: Path) -> dict:
    """Passed, failed, skipped and error counts from pytest's JUnit XML."""
    if not junit.exists():
        return {}
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
    return n


def check_output(name: str, args: argparse.Namespace, suffix: str) -> str | None:
    """What a step that exited 0 must also have delivered; None when it did."""
    if name == "tests":
        n = test_counts(args.workdir / f"tests_{suffix}.xml")
        if not n.get("passed"):
            return f"no test ran on {args.device} ({n or 'no report'})"
        return None
    file = {"schedules": "schedules", "slipstream": "slipstream", "training": "train_throughput",
            "serving": "serving"}[name]  # fmt: skip
    path = args.out / f"{file}_{suffix}.json"
    if not path.exists() or not path.with_suffix(".png").exists():
        return f"{path.name} or its PNG was not written"
    if name == "schedules":
        setup = json.loads(path.read_text())["setup"]
        ratio = setup["table_bytes"] / setup["hot_budget_bytes"]
        if ratio < MIN_TABLES_OVER_BUDGET:
            return f"tables only {ratio:.1f}x the hot budget (need {MIN_TABLES_OVER_BUDGET}x)"
    return None


def run(args: argparse.Namespace) -> dict:
    suffix = "gpu" if args.device == "cuda" else args.device
    args.out.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    paths = [str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    deadline = time.monotonic() + args.budget_s
    steps = []
    for name, cmd in step_commands(args, suffix):
        left = deadline - time.monotonic()
        record = {"step": name, "command": " ".join(cmd)}
        if left < 10:
            record.update(status="not run", reason="time budget spent")
            steps.append(record)
            continue
        print(f"[gpu-check] {name} ({left:.0f} s left) ...", flush=True)
        start = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, timeout=left, text=True,
                                  capture_output=True)  # fmt: skip
            rc, output = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = "timeout", (e.stdout or "") + (e.stderr or "")
            output = output.decode() if isinstance(output, bytes) else output
        record["wall_s"] = round(time.monotonic() - start, 1)
        problem = check_output(name, args, suffix) if rc == 0 else f"exit status {rc}"
        record["status"] = "ok" if problem is None else "failed"
        if problem:
            record["reason"] = problem
            record["output_tail"] = output[-3000:]
        if name == "tests":
            record["tests"] = test_counts(args.workdir / f"tests_{suffix}.xml")
        steps.append(record)
        print(f"[gpu-check] {name}: {record['status']} in {record['wall_s']} s"
              + (f" ({problem})" if problem else ""), flush=True)  # fmt: skip
    return {
        "benchmark": "gpu_check",
        "command": command_line(),
        "machine": machine(),
        "device": device_name(args.device),
        "size": args.size,
        "budget_s": args.budget_s,
        "steps": steps,
        "ok": all(s["status"] == "ok" for s in steps),
    }


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return "emulated (cpu, strict)"


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", choices=("cuda", "emulated"))
    p.add_argument("--size", choices=tuple(SIZES), default=None,
                   help="full (default on cuda) or ci (default on emulated)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None,
                   help="results folder (default: benchmarks/results on cuda, "
                   "benchmarks/work/gpu-check-emulated otherwise)")  # fmt: skip
    p.add_argument("--workdir", type=Path, default=None, help="datasets and runs (default: "
                   "benchmarks/work, or under --out for the emulated device)")  # fmt: skip
    p.add_argument("--budget-s", type=float, default=480.0, help="time for all steps (8 min)")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA device here; run `make gpu-check DEVICE=emulated` to check "
              "the same steps on the CPU", file=sys.stderr)  # fmt: skip
        return 2
    args.size = args.size or ("full" if args.device == "cuda" else "ci")
    if args.out is None:
        args.out = RESULTS if args.device == "cuda" else ROOT / "benchmarks/work/gpu-check-emulated"
    args.out = args.out.resolve()
    args.workdir = (args.workdir or (ROOT / "benchmarks/work" if args.device == "cuda"
                                     else args.out / "work")).resolve()  # fmt: skip
    result = run(args)
    suffix = "gpu" if args.device == "cuda" else args.device
    path = write_result(f"gpu_check_{suffix}", result, args.out)
    failed = [s["step"] for s in result["steps"] if s["status"] != "ok"]
    print(f"[gpu-check] wrote {path}; " + (f"FAILED: {', '.join(failed)}" if failed else "all ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
