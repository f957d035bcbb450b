"""The predictor: an artifact's models on every serving device, one call per batch.

Inputs come either prepared (dense [B, F_d] float32, already log(1 + x); sparse [B, T] per-
table ids, or with multi-hot tables a list of ids per bag table: bag_ids.py) or as raw Criteo fields mapped through the artifact's vocabularies (rawfields.py).
Prepared ids outside a table's range [0, rows) are refused with a ValueError naming the
first one (the server answers 422): such an id comes from another vocabulary, and silently
reading row 0 would hide that. Raw values never fail that way: unknown ones become id 0.

MP-Cache: for representations with a deep hash part (dhe, hybrid), `load(mp_cache=N)` caches
the decoder outputs of the N most popular ids of every feature (saved in the artifact from
the popularity profiler's counts on the training split, or counted on the dataset), so those
lookups skip the decoder and answer what the decoder answers (embeddings/mp_cache.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hotrec.config import config_from_dict
from hotrec.errors import HotrecError
from hotrec.models.artifact import (
    HASHED,
    POPULAR_KEPT,
    Artifact,
    Entry,
    dataset_popular_ids,
    load_artifact,
    read_manifest,
)
from hotrec.serving.bag_ids import BagIds, parse_bag_rows, zero_ids
from hotrec.serving.paths import ServingPath, all_paths
from hotrec.serving.rawfields import RawFieldMapper, raw_mapper_for
from hotrec.types import Schema


class Predictor:
    """predict(path, dense, sparse) -> click probabilities [B] for any path of the artifact."""

    def __init__(self, artifacts: dict[str, Artifact], max_batch: int = 4096) -> None:
        if not artifacts:
            raise HotrecError("a predictor needs at least one device")
        first = next(iter(artifacts.values()))
        self.artifacts = artifacts  # device -> the artifact's models loaded there
        self.schema: Schema = first.schema
        self.source = Path(first.path)
        self.entries = {name: e for name, e in first.entries.items()}
        self.paths = all_paths(list(self.entries), list(artifacts), max_batch)
        self.raw_mapper: RawFieldMapper | None
        self.raw_mapper, self.raw_unavailable = raw_mapper_for(
            first.schema, first.vocab_dir, first.dataset_meta
        )
        self._rows = np.array(first.schema.table_rows, dtype=np.int64)
        self.remote = None  # an object whose predict() runs the models elsewhere (workers.py)
        self.mp_cache: dict[str, int] = {}  # representation -> ids in its MP-Cache

    @classmethod
    def load(
        cls,
        path: Path,
        representations: list[str] | None = None,
        devices: list[str] | tuple[str, ...] = ("cpu",),
        max_batch: int = 4096,
        models: bool = True,
        mp_cache: int = 0,
    ) -> Predictor:
        """Load the artifact's models (all, or `representations`) once per device; with
        models=False only what checks inputs and describes the paths (schema, metrics,
        vocabularies), for a front end whose models run in worker processes. mp_cache: ids
        per feature whose deep-hash outputs are cached (0 = none)."""
        if models:
            artifacts = {d: load_artifact(path, representations, d) for d in devices}
            predictor = cls(artifacts, max_batch)
            if mp_cache > 0:
                predictor.build_mp_cache(mp_cache)
            return predictor
        art = load_artifact(path, [], "cpu")  # no models: schema, vocabularies, meta
        art.entries = manifest_entries(path, representations)
        return cls({d: art for d in devices}, max_batch)

    def build_mp_cache(self, per_feature: int) -> dict[str, int]:
        """Cache the `per_feature` most popular ids of each feature in every model with a
        deep hash part; {representation: cached ids}. The ids are the artifact's saved ones, else
        counted on its dataset."""
        hashed = [n for n, e in self.entries.items() if e.model_config.embedding in HASHED]
        if not hashed:
            return {}
        popular = self._popular_ids(per_feature)
        out = {}
        for art in self.artifacts.values():
            for name in hashed:
                cache = art.entries[name].model.embeddings.build_cache(popular)
                out[name] = cache.stats()["cached_ids"] if cache is not None else 0
        self.mp_cache = out
        return out

    def warm_up(self, batch_sizes: tuple[int, ...] = (1, 64, 512), calls: int = 2) -> None:
        """Run every path a few times on id-0 inputs, so that first-call costs (allocations,
        kernel selection) are paid before the first query is."""
        for path in self.paths:
            for b in batch_sizes:
                dense = np.zeros((min(b, path.max_batch), self.schema.num_dense), np.float32)
                sparse = zero_ids(self.schema, len(dense))
                for _ in range(calls):
                    self.predict(path, dense, sparse)

    def _popular_ids(self, per_feature: int) -> list[np.ndarray]:
        """The first `per_feature` of the artifact's saved popular ids of each table; counted
        on its dataset instead when it saved fewer than asked (or none) and the dataset is on
        this machine."""
        saved = next(iter(self.artifacts.values())).popular_ids
        here = self.dataset is not None and (Path(self.dataset) / "meta.json").is_file()
        if saved is not None and (per_feature <= POPULAR_KEPT or not here):
            return [ids[:per_feature] for ids in saved]
        if not here:
            raise HotrecError(
                f"the artifact holds no popular ids for MP-Cache and its dataset is not here "
                f"({self.dataset}); pass --mp-cache 0 to serve without it"
            )
        return dataset_popular_ids(Path(self.dataset), self.schema, per_feature)

    def cache_stats(self) -> dict[str, dict]:
        """Per path with an MP-Cache: cached ids, lookups, hits and hit rate so far."""
        out = {}
        for device, art in self.artifacts.items():
            for name, e in art.entries.items():
                emb = getattr(e.model, "embeddings", None)
                dhe = getattr(emb, "dhe", emb)  # hybrid holds its DHE part as .dhe
                stats = dhe.cache_stats() if hasattr(dhe, "cache_stats") else {}
                if stats:
                    out[f"{name}@{device}"] = stats
        return out

    @property
    def dataset(self) -> str | None:
        """The dataset the artifact was trained on (its manifest's record), if any."""
        return read_manifest(self.source).get("dataset")

    def path(self, name: str) -> ServingPath:
        for p in self.paths:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.paths)
        raise HotrecError(f"unknown path {name!r}: this predictor serves {known}")

    def metrics(self, representation: str) -> dict:
        """The representation's validation metrics from the artifact ({} when absent)."""
        return dict(self.entries[representation].val or {})

    def check(self, dense, sparse) -> tuple[np.ndarray, np.ndarray | BagIds]:
        """Prepared inputs -> (dense float32 [B, F_d], sparse int64 [B, T], or BagIds when the
        dataset has bag tables); ValueError with a one-line reason for a wrong shape, a
        non-finite value or an id out of range."""
        nd, nt = self.schema.num_dense, self.schema.num_tables
        bags = self.schema.has_bags
        try:
            dense = np.array(dense, dtype=np.float32)  # owned, writable copies
            sparse = parse_bag_rows(sparse, self.schema) if bags else np.array(sparse, np.int64)
        except (ValueError, TypeError, OverflowError) as e:
            if bags and isinstance(e, ValueError) and str(e).startswith("sparse"):
                raise  # parse_bag_rows's one line names the entry
            raise ValueError(f"inputs are not rectangular numeric arrays ({e})") from None
        if dense.ndim != 2 or dense.shape[1] != nd:
            raise ValueError(f"dense must be [items, {nd}], got shape {list(dense.shape)}")
        if not bags and (sparse.ndim != 2 or sparse.shape[1] != nt):
            raise ValueError(f"sparse must be [items, {nt}], got shape {list(sparse.shape)}")
        if len(dense) != len(sparse):
            raise ValueError(f"dense has {len(dense)} items but sparse has {len(sparse)}")
        if not np.isfinite(dense).all():
            raise ValueError("dense holds a non-finite value")
        if bags:  # ranges checked by parse_bag_rows
            return dense, sparse
        bad = (sparse < 0) | (sparse >= self._rows)  # [B, T]
        if bad.any():
            i, t = np.argwhere(bad)[0]
            table = self.schema.tables[t]
            raise ValueError(
                f"sparse[{i}][{t}] = {sparse[i, t]} is out of range for table {table.name} "
                f"(ids 0..{table.rows - 1})"
            )
        return dense, sparse

    def map_raw(self, rows: list[list]) -> tuple[np.ndarray, np.ndarray]:
        """Raw Criteo fields -> (dense, sparse); ValueError when not possible."""
        if self.raw_mapper is None:
            raise ValueError(self.raw_unavailable)
        return self.raw_mapper.map(rows)

    @torch.inference_mode()
    def predict(self, path: ServingPath, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        """Checked inputs -> probabilities [B] float32, computed on path.device."""
        if self.remote is not None:
            return self.remote.predict(path, dense, sparse)
        model = self.artifacts[path.device].entries[path.representation].model
        if model is None:
            raise HotrecError("this predictor holds no models (they run in worker processes)")
        if len(dense) == 0:
            return np.zeros(0, dtype=np.float32)
        d = torch.from_numpy(np.ascontiguousarray(dense)).to(path.device)  # [B, F_d]
        if isinstance(sparse, BagIds):  # the bags stay on the host, as in training
            one_hot = sparse.one_hot(self.schema.one_hot_tables)  # [B, T_one_hot]
            s = torch.from_numpy(one_hot).to(path.device)
            return torch.sigmoid(model(d, s, sparse.to_bags())).float().cpu().numpy()
        s = torch.from_numpy(np.ascontiguousarray(sparse)).to(path.device)  # [B, T]
        return torch.sigmoid(model(d, s)).float().cpu().numpy()  # [B]


def manifest_entries(path: Path, representations: list[str] | None) -> dict[str, Entry]:
    """The artifact's representations as entries without models (config and metrics)."""
    manifest = read_manifest(path)
    reps = manifest["representations"]
    out = {}
    for name in representations or list(reps):
        if name not in reps:
            raise HotrecError(f"{path} has no representation {name!r} (it has {', '.join(reps)})")
        info = reps[name]
        model_cfg = config_from_dict({**manifest["config"], "model": info["model"]}).model
        out[name] = Entry(name, model_cfg, info.get("val"), info.get("test"),
                          info.get("param_bytes", 0))  # fmt: skip
    return out
