"""The multi-representation artifact: one trained DLRM per representation, ready to serve.

A directory, written atomically (a temporary directory renamed into place):

    manifest.json     format, schema, the shared run config, per representation its model
                      config, validation/test metrics and parameter bytes, the dataset source
    <name>.pt         the state_dict of representation <name>'s model
    vocab/            the dataset's vocabularies (raw value -> id), when it has them
    dataset_meta.json the dataset's meta.json (source, dense transform, splits)
    popular_ids.npz   per table its most looked-up training ids, most popular first, for
                      MP-Cache (when a representation has a deep hash part)
    checksums.json    the BLAKE2b digest of every file above, checked when it is loaded
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hotrec.config import ModelConfig, RunConfig, config_from_dict
from hotrec.errors import HotrecError
from hotrec.fileio import read_json_object
from hotrec.integrity import (
    CHECKSUMS,
    load_tensors,
    non_finite_entry,
    verify_checksums,
    write_checksums,
)
from hotrec.models.builders import build_dlrm
from hotrec.models.dlrm import DLRM
from hotrec.types import Schema

FORMAT = "hotrec-artifact"
VERSION = 1
MANIFEST = "manifest.json"
POPULAR = "popular_ids.npz"  # per table, its most looked-up ids, most popular first (MP-Cache)
POPULAR_KEPT = 16384  # ids kept per table
HASHED = ("dhe", "hybrid")  # representations with a deep hash part, which MP-Cache serves


@dataclass
class Entry:
    """One representation's model and what training measured about it."""

    name: str
    model_config: ModelConfig
    val: dict | None = None  # auc, logloss, accuracy on the validation split
    test: dict | None = None
    param_bytes: int = 0  # bytes of the model's parameters and embedding rows
    model: DLRM | None = None  # the loaded model (eval mode), None until loaded


@dataclass
class Artifact:
    path: Path
    schema: Schema
    config: RunConfig  # the shared run config (model section = the first representation's)
    entries: dict[str, Entry] = field(default_factory=dict)
    vocab_dir: Path | None = None
    dataset_meta: dict = field(default_factory=dict)
    popular_ids: list[np.ndarray] | None = None  # per table, most popular first (POPULAR)

    @property
    def models(self) -> dict[str, DLRM]:
        return {name: e.model for name, e in self.entries.items()}


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer (embedding rows are buffers)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def save_artifact(
    path: Path,
    schema: Schema,
    config: RunConfig,
    entries: list[Entry],
    dataset_dir: Path | None = None,
) -> Path:
    """Write the artifact (each entry's `model` must be set); replaces an existing one only
    once the new one is complete."""
    path = Path(path)
    if not entries:
        raise HotrecError("an artifact needs at least one representation")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "schema": schema.to_dict(),
            "config": config.to_dict(),
            "dataset": str(dataset_dir) if dataset_dir else None,
            "representations": {},
        }
        for e in entries:
            if e.model is None:
                raise ValueError(f"entry {e.name} has no model")
            state = {k: v.detach().cpu() for k, v in e.model.state_dict().items()}
            torch.save(state, tmp / f"{e.name}.pt")
            manifest["representations"][e.name] = {
                "model": dataclasses.asdict(e.model_config),
                "val": e.val,
                "test": e.test,
                "param_bytes": e.param_bytes or model_bytes(e.model),
            }
        if dataset_dir is not None:
            _copy_dataset_files(Path(dataset_dir), tmp)
            if any(e.model_config.embedding in HASHED for e in entries):
                popular = dataset_popular_ids(Path(dataset_dir), schema, POPULAR_KEPT)
                np.savez(tmp / POPULAR, *popular)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        files = [str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file()]
        write_checksums(tmp, files)
        _replace_dir(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def read_manifest(path: Path) -> dict:
    path = Path(path)
    file = path / MANIFEST
    if not file.is_file():
        raise HotrecError(f"{path} is not a hotrec artifact (no {MANIFEST})")
    manifest = read_json_object(file)
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise HotrecError(f"{path} is not a version-{VERSION} hotrec artifact")
    reps = manifest.get("representations")
    if (
        not isinstance(reps, dict)
        or not reps
        or not all(isinstance(r, dict) for r in reps.values())
    ):
        raise HotrecError(f"{file}: 'representations' is missing or not a map of objects")
    for name in reps:
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise HotrecError(f"{file}: representation name {name!r} is not a plain name")
    if not isinstance(manifest.get("config"), dict):
        raise HotrecError(f"{file}: 'config' is missing or not an object")
    try:
        Schema.from_dict(manifest["schema"])
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise HotrecError(
            f"{file}: 'schema' is missing or damaged ({type(e).__name__}: {e})"
        ) from None
    return manifest


def load_artifact(
    path: Path, names: list[str] | None = None, device: str | torch.device = "cpu"
) -> Artifact:
    """Load the artifact's models (all, or `names`) in eval mode on `device`."""
    path = Path(path)
    manifest = read_manifest(path)
    if not (path / CHECKSUMS).is_file():
        raise HotrecError(
            f"{path} has no {CHECKSUMS} (written by an older hotrec?): export it again"
        )
    verify_checksums(path, missing_ok=True)  # a missing file: its reader says what it was for
    schema = Schema.from_dict(manifest["schema"])
    config = config_from_dict(manifest["config"])
    reps = manifest["representations"]
    for name in names or []:
        if name not in reps:
            raise HotrecError(f"{path} has no representation {name!r} (it has {', '.join(reps)})")
    art = Artifact(path, schema, config)
    for name, info in reps.items():
        if names is not None and name not in names:
            continue
        model_cfg = config_from_dict({**manifest["config"], "model": info.get("model")}).model
        model = build_dlrm(schema, model_cfg, config.optim, config.train.seed)
        state = load_tensors(path / f"{name}.pt", "model file")
        bad = non_finite_entry(state)
        if bad:
            raise HotrecError(f"{path}/{name}.pt: tensor {bad} holds NaN or infinite values")
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError, KeyError) as e:
            first = str(e).strip().splitlines()[0]
            raise HotrecError(f"{path}/{name}.pt cannot be loaded: {first}") from None
        model.to(device).eval()
        if hasattr(model.embeddings, "place"):
            model.embeddings.place(torch.device(device))
        art.entries[name] = Entry(
            name, model_cfg, info.get("val"), info.get("test"), info.get("param_bytes", 0), model
        )
    if (path / "vocab").is_dir():
        art.vocab_dir = path / "vocab"
    if (path / "dataset_meta.json").is_file():
        art.dataset_meta = read_json_object(path / "dataset_meta.json")
    if (path / POPULAR).is_file():
        art.popular_ids = _read_popular(path / POPULAR, schema)
    return art


def _read_popular(file: Path, schema: Schema) -> list[np.ndarray]:
    """Per table its popular ids: 1-d integer arrays of ids inside the table."""
    try:
        with np.load(file, allow_pickle=False) as saved:
            arrays = [saved[f"arr_{t}"] for t in range(schema.num_tables)]
    except Exception as e:  # zipfile, KeyError, ValueError, EOFError: a damaged file
        raise HotrecError(f"{file} is not readable (damaged?): {type(e).__name__}: {e}") from None
    for t, ids in enumerate(arrays):
        table = schema.tables[t]
        if ids.ndim != 1 or ids.dtype.kind not in "iu":
            raise HotrecError(f"{file}: table {table.name} holds {ids.dtype} {ids.shape}, not ids")
        if len(ids) and (ids.min() < 0 or ids.max() >= table.rows):
            bad = ids.max() if ids.max() >= table.rows else ids.min()
            raise HotrecError(
                f"{file}: table {table.name} has id {bad}, outside its {table.rows} rows"
            )
    return arrays


def dataset_popular_ids(dataset_dir: Path, schema: Schema, per_feature: int) -> list[np.ndarray]:
    """The `per_feature` most-looked-up ids of every table, most popular first, counted by the
    popularity profiler on a 5% block sample of the dataset's training split."""
    from hotrec.data.format import open_dataset
    from hotrec.embeddings.mp_cache import popular_ids_from_counts
    from hotrec.placement.popularity import PopularityProfiler

    if not (Path(dataset_dir) / "meta.json").is_file():
        raise HotrecError(f"{dataset_dir} is not a dataset directory: no popular ids to count")
    ds = open_dataset(Path(dataset_dir))
    if ds.schema != schema or not ds.has_split("train"):
        raise HotrecError(f"{dataset_dir} has not the artifact's schema or no training split")
    train = ds.split("train")
    bags = None
    if train.layout is not None:  # multi-hot: every id of every bag is counted
        from hotrec.data.loader import jagged_ids

        bags = lambda a, b: jagged_ids(train, slice(a, b))  # noqa: E731
    prof = PopularityProfiler(sample_fraction=0.05).fit(train.sparse, schema.table_rows, bags=bags)
    return popular_ids_from_counts(prof.counts_, prof.table_offsets_, prof.table_rows_, per_feature)


def _copy_dataset_files(dataset_dir: Path, out: Path) -> None:
    if (dataset_dir / "vocab").is_dir():
        shutil.copytree(dataset_dir / "vocab", out / "vocab")
    if (dataset_dir / "meta.json").is_file():
        shutil.copy2(dataset_dir / "meta.json", out / "dataset_meta.json")


def _replace_dir(new: Path, target: Path) -> None:
    """Rename `new` to `target`; an existing target is moved aside first, removed after."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
