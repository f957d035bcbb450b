"""The serving profile: each path's latency against batch size, and its expected accuracy.

Written by `hotrec serve-profile` (profiler.py), read by the policies. Latency between two
measured batch sizes is interpolated linearly; beyond the largest it grows in proportion to
the items (the last point's time per item), below the smallest it is the smallest's.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from pathlib import Path

from hotrec.errors import HotrecError
from hotrec.fileio import write_json_atomic
from hotrec.serving.paths import ServingPath

FORMAT = "hotrec-serving-profile"
VERSION = 1
QUANTILES = ("median", "p95", "p99")


@dataclass
class PathProfile:
    path: ServingPath
    accuracy: float  # validation accuracy of the representation (threshold 0.5)
    auc: float  # validation AUC of the representation
    batch_sizes: list[int]  # measured batch sizes, increasing
    latency: dict[str, list[float]]  # quantile -> ms per batch size ("median", "p95", "p99")

    def latency_ms(self, items: int, quantile: str = "p99") -> float:
        """Predicted execution time of a batch of `items` items."""
        xs = self.batch_sizes
        ys = self.latency[quantile]
        if items >= xs[-1]:
            return ys[-1] * items / xs[-1]
        if items <= xs[0]:
            return ys[0]
        i = bisect.bisect_right(xs, items)  # xs[i - 1] <= items < xs[i]; plain Python:
        x0, x1, y0 = xs[i - 1], xs[i], ys[i - 1]  # the policies call this a lot
        return y0 + (ys[i] - y0) * (items - x0) / (x1 - x0)

    def to_dict(self) -> dict:
        p = self.path
        return {
            "representation": p.representation,
            "device": p.device,
            "max_batch": p.max_batch,
            "min_batch": p.min_batch,
            "accuracy": self.accuracy,
            "auc": self.auc,
            "batch_sizes": list(self.batch_sizes),
            **{f"{q}_ms": list(self.latency[q]) for q in QUANTILES},
        }

    @classmethod
    def from_dict(cls, d: dict) -> PathProfile:
        path = ServingPath(d["representation"], d["device"], d["max_batch"], d.get("min_batch", 1))
        latency = {q: [float(v) for v in d[f"{q}_ms"]] for q in QUANTILES}
        sizes = [int(b) for b in d["batch_sizes"]]
        if not sizes or any(len(v) != len(sizes) for v in latency.values()):
            raise ValueError(f"path {path.name}: latency lists do not match the batch sizes")
        if sizes != sorted(set(sizes)):
            raise ValueError(f"path {path.name}: batch sizes must increase")
        return cls(path, float(d["accuracy"]), float(d["auc"]), sizes, latency)


@dataclass
class Profile:
    paths: dict[str, PathProfile]  # path name -> its profile
    meta: dict = field(default_factory=dict)  # artifact, machine, repeats, ...

    def __getitem__(self, name: str) -> PathProfile:
        if name not in self.paths:
            known = ", ".join(self.paths)
            raise HotrecError(f"the profile has no path {name!r} (it has {known})")
        return self.paths[name]

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            **self.meta,
            "paths": {n: p.to_dict() for n, p in self.paths.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Profile:
        if d.get("format") != FORMAT or d.get("version") != VERSION:
            raise ValueError(f"not a version-{VERSION} {FORMAT} file")
        meta = {k: v for k, v in d.items() if k not in ("format", "version", "paths")}
        paths = {n: PathProfile.from_dict(p) for n, p in d["paths"].items()}
        if not paths:
            raise ValueError("the profile has no paths")
        return cls(paths, meta)

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: Path) -> Profile:
        path = Path(path)
        if not path.is_file():
            raise HotrecError(f"{path} not found: write it with `hotrec serve-profile`")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise HotrecError(f"{path} is not a serving profile ({e})") from None


def quantile_for(percentile: float) -> str:
    """The profiled quantile to plan with for a target percentile (the next one at or above)."""
    if percentile <= 50:
        return "median"
    if percentile <= 95:
        return "p95"
    return "p99"
