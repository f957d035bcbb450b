"""Throughput and peak memory of `prepare_criteo_kaggle` on a generated Criteo-format file.

Generates a realistic Criteo Kaggle TSV (label, 13 integers, 26 hex categoricals with skewed
frequencies and values >= 0x80000000, empty fields, a few malformed lines), prepares it in a
child process, and compares MB/s and peak RSS of that child with the targets
(>= 100 MB/s, <= 2 GB). Writes a JSON and a PNG under --out.

    python benchmarks/prepare_throughput.py --size-gb 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

from common import machine

TARGET_MBPS = 100.0
TARGET_RSS_GB = 2.0
# Distinct values per categorical table, a scaled-down echo of the real Criteo cardinalities.
CARDINALITIES = (
    1_400, 550, 1_000_000, 200_000, 300, 24, 12_000, 630, 3, 90_000, 5_600, 800_000, 3_200,
    27, 14_000, 500_000, 10, 5_600, 2_100, 4, 700_000, 18, 15, 140_000, 105, 90_000,
)  # fmt: skip
ROOT = Path(__file__).resolve().parent


def hex_pool(rng: np.random.Generator, size: int) -> pl.Series:
    """`size` distinct lowercase hex strings over the full uint32 range, a few shorter than 8."""
    values = rng.choice(1 << 32, size=size, replace=False) if size < 1 << 20 else None
    if values is None:
        values = np.unique(rng.integers(0, 1 << 32, size=size + size // 8, dtype=np.uint64))
        values = rng.permutation(values)[:size]
    width = np.where(rng.random(size) < 0.02, 6, 8)
    return pl.Series([f"{int(v):0{int(w)}x}" for v, w in zip(values, width, strict=True)])


def generate_block(rng: np.random.Generator, pools: list[pl.Series], n: int) -> pl.DataFrame:
    """n rows: label, I1..I13 (~10% empty, a few negative), C1..C26 (Zipf-like, ~4% empty)."""
    cols: dict[str, pl.Series] = {"label": pl.Series((rng.random(n) < 0.26).astype(np.int8))}
    for i in range(13):
        v = np.floor(rng.exponential(30.0 * (i + 1), n)).astype(np.int64) - (i == 1)
        cols[f"I{i + 1}"] = pl.Series(v).scatter(np.flatnonzero(rng.random(n) < 0.1), None)
    for t, pool in enumerate(pools):
        idx = (len(pool) * rng.random(n) ** 4).astype(np.int64)  # skewed towards low indices
        col = pool.gather(idx)
        cols[f"C{t + 1}"] = col.scatter(np.flatnonzero(rng.random(n) < 0.04), None)
    return pl.DataFrame(cols)


def generate(path: Path, size_bytes: int, seed: int = 0) -> int:
    """Write at least size_bytes of Criteo TSV; returns the number of lines."""
    rng = np.random.default_rng(seed)
    pools = [hex_pool(rng, c) for c in CARDINALITIES]
    bad = [b"\n", b"1\t2\t3\n", b"0" + b"\t" * 40 + b"\n", b"0\t12x" + b"\t" * 38 + b"\n"]
    lines = 0
    with open(path, "wb") as f:
        while f.tell() < size_bytes:
            block = generate_block(rng, pools, 250_000)
            f.write(
                block.write_csv(separator="\t", include_header=False, quote_style="never").encode()
            )
            f.write(bad[lines % len(bad)])
            lines += block.height + 1
    return lines


def run_child(path: Path, out: Path) -> tuple[float, float]:
    """Prepare in a child process; returns (seconds, peak RSS in GB of the child)."""
    code = (
        "import sys; from pathlib import Path;"
        "from hotrec.data.criteo import prepare_criteo_kaggle;"
        "prepare_criteo_kaggle(Path(sys.argv[1]), Path(sys.argv[2]), overwrite=True)"
    )
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True)
    seconds = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kilobytes
    return seconds, peak_kb / 2**20


def plot(result: dict, path: Path) -> None:
    """Two bars against their targets: MB/s (higher is better) and peak RSS (lower is better)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    pairs = [
        (axes[0], result["mb_per_s"], TARGET_MBPS, "MB/s (target >=)", result["pass_mbps"]),
        (
            axes[1],
            result["peak_rss_gb"],
            TARGET_RSS_GB,
            "peak RSS GB (target <=)",
            result["pass_rss"],
        ),
    ]
    for ax, value, target, title, ok in pairs:
        ax.bar(["measured"], [value], color="tab:green" if ok else "tab:red")
        ax.axhline(target, color="black", linestyle="--", label=f"target {target:g}")
        ax.set_title(title)
        ax.legend()
    fig.suptitle(
        f"prepare_criteo_kaggle, {result['file_gb']:.2f} GB, {result['rows']:,} lines, "
        f"{result['machine']['cores']} cores"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-gb", type=float, default=1.0, help="size of the generated file")
    p.add_argument("--workdir", type=Path, default=ROOT / "work", help="scratch (git-ignored)")
    p.add_argument("--out", type=Path, default=ROOT / "results", help="where JSON and PNG go")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--keep", action="store_true", help="keep the generated file and dataset")
    args = p.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    data, prepared = args.workdir / "criteo_train.txt", args.workdir / "criteo_prepared"
    size = int(args.size_gb * 1e9)
    if not data.exists() or data.stat().st_size < size:
        t = time.perf_counter()
        generate(data, size, args.seed)
        print(
            f"generated {data} ({data.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - t:.1f}s"
        )
    file_bytes = data.stat().st_size
    load_before = os.getloadavg()[0]  # other work on the machine skews the timing
    seconds, rss_gb = run_child(data, prepared)
    meta = json.loads((prepared / "meta.json").read_text())
    rows = meta["rows"]["rows_read"]
    mbps = file_bytes / 1e6 / seconds
    result = {
        "benchmark": "prepare_throughput",
        "machine": machine(),
        "load_average_1min_before": load_before,
        "file_bytes": file_bytes,
        "file_gb": file_bytes / 1e9,
        "rows": rows,
        "rows_written": meta["rows"]["rows_written"],
        "rows_rejected": meta["rows"]["rows_rejected"],
        "seconds": seconds,
        "mb_per_s": mbps,
        "rows_per_s": rows / seconds,
        "peak_rss_gb": rss_gb,
        "targets": {"mb_per_s_min": TARGET_MBPS, "peak_rss_gb_max": TARGET_RSS_GB},
        "pass_mbps": mbps >= TARGET_MBPS,
        "pass_rss": rss_gb <= TARGET_RSS_GB,
        "command": f"python benchmarks/prepare_throughput.py --size-gb {args.size_gb:g}",
    }
    (args.out / "prepare_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "prepare_throughput.png")
    ok = {True: "pass", False: "FAIL"}
    print(f"{'metric':<14}{'measured':>14}{'target':>12}  result")
    print(f"{'file':<14}{file_bytes / 1e9:>11.2f} GB{'':>12}  {rows:,} lines")
    print(f"{'seconds':<14}{seconds:>14.1f}")
    print(f"{'throughput':<14}{mbps:>9.1f} MB/s{'>= 100':>12}  {ok[result['pass_mbps']]}")
    print(f"{'rows/s':<14}{rows / seconds:>14,.0f}")
    print(f"{'peak RSS':<14}{rss_gb:>11.2f} GB{'<= 2.0':>12}  {ok[result['pass_rss']]}")
    print(f"reproduce: {result['command']}")
    if not args.keep:
        shutil.rmtree(prepared, ignore_errors=True)


if __name__ == "__main__":
    main()
