"""`hotrec serve-profile`: measure each path's latency against batch size.

For every path and batch size the profiler runs the predictor on inputs drawn from a
dataset split (or random valid ids when none is given): a few warm-up calls, then up to
`repeats` timed calls (fewer, but at least MIN_TIMED, when one point would take more than
`max_seconds`), keeping the median, p95 and p99. Execution time cannot fall as a batch
grows, so each quantile's curve is made non-decreasing in batch size (a running maximum);
otherwise one noisy small point would make a larger batch look cheaper. Each path's
expected accuracy and AUC are the representation's validation metrics recorded in the
artifact.
"""

from __future__ import annotations

import time

import numpy as np

from hotrec.errors import HotrecError
from hotrec.progress import make_progress
from hotrec.serving.bag_ids import BagIds, random_ids, take_ids
from hotrec.serving.paths import ServingPath
from hotrec.serving.predictor import Predictor
from hotrec.serving.profile import PathProfile, Profile

DEFAULT_BATCH_SIZES = tuple(2**i for i in range(13))  # 1 .. 4096
MIN_TIMED = 5  # timed calls per point even past the point's time budget


def random_inputs(schema, rows: int, seed: int) -> tuple[np.ndarray, np.ndarray | BagIds]:
    """Valid inputs when no dataset is given: log1p of exponential dense values, uniform ids
    (a bag table's bags hold 1..8 of them)."""
    rng = np.random.default_rng(seed)
    dense = np.log1p(rng.exponential(3.0, (rows, schema.num_dense))).astype(np.float32)
    if schema.has_bags:
        return dense, random_ids(schema, rows, rng)
    sparse = np.stack([rng.integers(0, n, rows) for n in schema.table_rows], axis=1)  # [N, T]
    return dense, sparse.astype(np.int64)


def path_accuracy(predictor: Predictor, representation: str) -> tuple[float, float]:
    """(val accuracy, val AUC) of a representation, as recorded in the artifact."""
    val = predictor.metrics(representation)
    if "accuracy" not in val or "auc" not in val:
        raise HotrecError(
            f"the artifact records no validation accuracy/AUC for {representation!r}: the "
            "policies need them (train it with a validation split)"
        )
    return float(val["accuracy"]), float(val["auc"])


class LatencyProfiler:
    """Measures latency quantiles per (path, batch size); the result is `profile_`."""

    def __init__(
        self,
        batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
        repeats: int = 30,
        warmup: int = 3,
        max_seconds: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.batch_sizes = batch_sizes
        self.repeats = repeats
        self.warmup = warmup
        self.max_seconds = max_seconds  # time budget of one (path, batch size) point
        self.seed = seed

    def fit(
        self,
        predictor: Predictor,
        paths: list[ServingPath] | None = None,
        inputs: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LatencyProfiler:
        """Profile `paths` (default: all of the predictor's) on `inputs` (dense, sparse)."""
        sizes = sorted({int(b) for b in self.batch_sizes})
        if not sizes or sizes[0] < 1 or self.repeats < 1:
            raise HotrecError("batch sizes must be >= 1 and repeats >= 1")
        paths = paths or predictor.paths
        if inputs is None:
            inputs = random_inputs(predictor.schema, max(sizes), self.seed)
        dense, sparse = predictor.check(*inputs)
        rng = np.random.default_rng(self.seed)
        measured: dict[str, PathProfile] = {}
        progress = make_progress(unit="points")
        task = progress.add_task("profiling paths", total=len(paths) * len(sizes), rate="", info="")
        with progress:
            for path in paths:
                accuracy, auc = path_accuracy(predictor, path.representation)
                usable = [b for b in sizes if b <= path.max_batch] or sizes[:1]
                latency: dict[str, list[float]] = {"median": [], "p95": [], "p99": []}
                for b in usable:
                    times = self._time(predictor, path, *_draw(dense, sparse, b, rng))
                    for q, v in zip(("median", "p95", "p99"), _quantiles(times), strict=True):
                        latency[q].append(v)
                    info = f"{path.name} batch {b}: median {latency['median'][-1]:.2f} ms"
                    progress.update(task, advance=1, info=info)
                monotone = {q: np.maximum.accumulate(v).tolist() for q, v in latency.items()}
                measured[path.name] = PathProfile(path, accuracy, auc, usable, monotone)
        meta = {
            "artifact": str(predictor.source),
            "repeats": self.repeats,
            "seed": self.seed,
        }
        self.profile_ = Profile(measured, meta)
        return self

    def _time(
        self, predictor: Predictor, path: ServingPath, dense: np.ndarray, sparse: np.ndarray
    ) -> list[float]:
        """Milliseconds of each timed call (after warm-up), within the point's time budget."""
        for _ in range(self.warmup):
            predictor.predict(path, dense, sparse)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < self.repeats:
            t = time.perf_counter()
            predictor.predict(path, dense, sparse)
            times.append((time.perf_counter() - t) * 1e3)
            if time.perf_counter() - start > self.max_seconds and len(times) >= MIN_TIMED:
                break
        return times


def _draw(dense: np.ndarray, sparse, n: int, rng) -> tuple[np.ndarray, np.ndarray | BagIds]:
    """n rows of the inputs (with replacement when there are fewer than n)."""
    idx = rng.choice(len(dense), n, replace=len(dense) < n)
    return dense[idx], take_ids(sparse, idx)


def _quantiles(times: list[float]) -> tuple[float, float, float]:
    a = np.asarray(times)
    return float(np.median(a)), float(np.percentile(a, 95)), float(np.percentile(a, 99))
