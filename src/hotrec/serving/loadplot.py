"""The load-test figure: tail latency and correct predictions/s against offered load."""

from __future__ import annotations

from pathlib import Path

from hotrec.placement.popularity_plot import require_pyplot


def plot_sweeps(
    sweeps: dict[str, list[dict]], target_ms: float, path: Path, title: str = ""
) -> Path:
    """One line per policy: p99 latency of answered queries (log scale, target dashed) and
    correct predictions/s within the target (query size x the path's validation accuracy,
    the MP-Rec metric), both against offered queries/s."""
    plt = require_pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, rows in sweeps.items():
        x = [r["offered_qps"] for r in rows]
        style = {"marker": "o", "linewidth": 2.2 if name == "mprec" else 1.2}
        left.plot(x, [r["p99_ms"] for r in rows], label=name, **style)
        right.plot(x, [r["expected_correct_per_s"] for r in rows], label=name, **style)
    left.axhline(target_ms, color="grey", linestyle="--", linewidth=1, label="target")
    left.set_yscale("log")
    left.set_xlabel("offered load (queries/s)")
    left.set_ylabel("p99 latency of answered queries (ms)")
    right.set_xlabel("offered load (queries/s)")
    right.set_ylabel("correct predictions/s within target\n(items x path accuracy)")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    right.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
