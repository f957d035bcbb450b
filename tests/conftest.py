"""Shared fixtures: a tiny learnable dataset written in the real dataset-directory format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hotrec.data.format import DatasetWriter
from hotrec.types import Schema, TableSpec


def write_toy_dataset(
    out: Path,
    rows: int = 3000,
    table_rows: tuple[int, ...] = (50, 20, 200, 7),
    num_dense: int = 3,
    seed: int = 0,
) -> Path:
    """Skewed ids and a label that depends on ids and dense values, so models can learn it."""
    rng = np.random.default_rng(seed)
    schema = Schema(
        dense_names=tuple(f"I{i + 1}" for i in range(num_dense)),
        tables=tuple(TableSpec(f"C{t + 1}", n) for t, n in enumerate(table_rows)),
    )
    effects = [rng.normal(0, 1.5, n) for n in table_rows]
    sizes = {"train": int(rows * 0.7), "val": int(rows * 0.15)}
    sizes["test"] = rows - sizes["train"] - sizes["val"]
    with DatasetWriter(out) as w:
        for split, n in sizes.items():
            a = w.create_split(split, n, schema)
            ids = np.stack(
                [np.minimum(rng.zipf(1.3, n), m - 1) for m in table_rows], axis=1
            )  # [n, T]
            dense = np.log1p(rng.exponential(3.0, (n, num_dense))).astype(np.float32)
            logit = sum(effects[t][ids[:, t]] for t in range(len(table_rows))) + dense[:, 0] - 1.5
            a.sparse[:] = ids
            a.dense[:] = dense
            a.label[:] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
        w.commit(schema, {"source": "toy"})
    return out


@pytest.fixture
def toy_dataset(tmp_path: Path) -> Path:
    return write_toy_dataset(tmp_path / "toy")
