"""Shared fixtures: a tiny learnable dataset written in the real dataset-directory format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hotrec.data.format import SPLITS, DatasetWriter, open_dataset
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


def write_bag_dataset(
    src: Path,
    out: Path,
    pooling: dict[int, str],
    max_extra: int = 0,
    empty_share: float = 0.0,
    seed: int = 0,
) -> Path:
    """A copy of the one-hot dataset `src` whose tables `pooling` (index -> sum | mean) are
    multi-hot: each row's bag is its one-hot id followed by up to `max_extra` random ids of
    the same table, or empty for about `empty_share` of the rows. max_extra=0, empty_share=0:
    every bag holds exactly the one-hot id."""
    rng = np.random.default_rng(seed)
    ds = open_dataset(src)
    schema = Schema(
        ds.schema.dense_names,
        tuple(
            TableSpec(t.name, t.rows, pooling.get(i, "")) for i, t in enumerate(ds.schema.tables)
        ),
    )
    with DatasetWriter(out) as w:
        for split in SPLITS:
            if not ds.has_split(split):
                continue
            a = ds.split(split)
            n, ids = len(a), np.asarray(a.sparse)
            bags = {}
            for t in schema.bag_tables:
                keep = rng.random(n) >= empty_share
                lengths = np.where(keep, 1 + rng.integers(0, max_extra + 1, n), 0)
                offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
                values = rng.integers(0, schema.tables[t].rows, int(offsets[-1]))
                values[offsets[:-1][keep]] = ids[keep, t]  # the one-hot id first
                bags[t] = (values, offsets)
            dst = w.create_split(split, n, schema, {t: len(v) for t, (v, _) in bags.items()})
            dst.dense[:], dst.label[:] = a.dense, a.label
            dst.sparse[:] = ids[:, schema.one_hot_tables]
            for (values, offsets), t in zip(dst.bags, schema.bag_tables, strict=True):
                values[:], offsets[:] = bags[t]
        w.commit(schema, {"source": "toy"})
    return out
