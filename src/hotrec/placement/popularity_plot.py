"""The profile figure: per-table access CDFs and the hot-input share against the byte budget.

matplotlib is an optional dependency (the bench and dev extras), imported only here, lazily.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hotrec.errors import HotrecError
from hotrec.placement.bytesize import format_bytes
from hotrec.placement.popularity import PopularityProfiler, access_cdf

MAX_CDF_TABLES = 8  # largest tables drawn in the CDF panel


def require_pyplot():
    """matplotlib.pyplot on the Agg backend, or a one-line error telling how to install it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise HotrecError("plotting needs matplotlib: pip install 'hotrec[bench]'") from None
    return plt


def plot_profile(
    profiler: PopularityProfiler,
    curve: list[dict],
    chosen_budget: int,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """Write a two-panel PNG: access CDF of the largest tables, hot shares vs budget."""
    plt = require_pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    largest = np.argsort(profiler.table_rows_, kind="stable")[::-1][:MAX_CDF_TABLES]
    for t in largest:
        row_share, lookup_share = access_cdf(profiler.table_counts(int(t)))
        name = profiler.table_names_[int(t)]
        left.plot(row_share, lookup_share, label=f"{name} ({profiler.table_rows_[int(t)]:,})")
    left.set_xscale("log")
    left.set_xlabel("share of the table's rows (most accessed first)")
    left.set_ylabel("share of the table's sampled lookups")
    left.set_title("access CDF, largest tables")
    left.set_ylim(0, 1.02)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7, loc="lower right")

    budgets = [p["budget_bytes"] for p in curve]
    right.plot(budgets, [p["input_share"] for p in curve], "o-", label="hot inputs")
    right.plot(budgets, [p["lookup_share"] for p in curve], "s--", label="hot lookups")
    right.axvline(chosen_budget, color="grey", linestyle=":", label="chosen budget")
    right.set_xscale("log", base=2)
    right.set_xticks(budgets, [format_bytes(b) for b in budgets], rotation=45, fontsize=7)
    right.minorticks_off()
    right.set_xlabel("device budget for hot rows")
    right.set_ylabel("share of the sample")
    right.set_title("hot share vs budget")
    right.set_ylim(0, 1.02)
    right.grid(True, alpha=0.3)
    right.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
