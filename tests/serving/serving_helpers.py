"""Tiny artifacts for the serving tests: untrained toy-sized DLRMs with chosen val metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from hotrec.config import ModelConfig, RunConfig
from hotrec.models.artifact import Entry, save_artifact
from hotrec.models.builders import build_dlrm
from hotrec.types import Schema, TableSpec
from tests.conftest import write_toy_dataset

SMALL = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
LARGE = ModelConfig(embedding_dim=8, bottom_mlp=(32, 8), top_mlp=(64, 32, 1))


def make_artifact(
    tmp: Path,
    reps: dict[str, tuple[ModelConfig, float]] | None = None,
    dataset: Path | None = None,
) -> Path:
    """An artifact over the toy dataset (or `dataset`): name -> (model config, val accuracy)."""
    reps = reps or {"small": (SMALL, 0.70), "large": (LARGE, 0.75)}
    data = dataset or write_toy_dataset(tmp / "toy", rows=600)
    schema = Schema.from_dict(json.loads((data / "meta.json").read_text())["schema"])
    cfg = RunConfig()
    entries = []
    for i, (name, (model_cfg, acc)) in enumerate(reps.items()):
        model = build_dlrm(schema, model_cfg, cfg.optim, seed=i)
        val = {"auc": acc + 0.05, "logloss": 0.5, "accuracy": acc, "rows": 90}
        entries.append(Entry(name, model_cfg, val, val, 0, model))
    return save_artifact(tmp / "artifact", schema, cfg, entries, data)


def criteo_like_dataset(tmp: Path, vocab: dict[str, list[int]]) -> Path:
    """A toy dataset that claims to be Criteo-prepared, with vocab/<table>.npy keys."""
    tables = tuple(TableSpec(name, len(keys) + 1) for name, keys in vocab.items())
    data = write_toy_dataset(tmp / "criteo-toy", rows=300, table_rows=tuple(t.rows for t in tables))
    meta = json.loads((data / "meta.json").read_text())
    meta["source"] = "criteo-kaggle"
    meta["schema"]["tables"] = [{"name": t.name, "rows": t.rows} for t in tables]
    (data / "meta.json").write_text(json.dumps(meta))
    (data / "vocab").mkdir()
    for name, keys in vocab.items():
        np.save(data / "vocab" / f"{name}.npy", np.array(keys, dtype=np.int64))
    return data
