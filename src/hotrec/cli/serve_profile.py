"""`hotrec serve-profile`: each serving path's latency against batch size, and its accuracy."""

from __future__ import annotations

import argparse
from pathlib import Path

from hotrec.errors import HotrecError

QUICK_SIZES = (1, 4, 16, 64, 256, 1024, 4096)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve-profile",
        help="measure each serving path's latency against batch size",
        description="Load an artifact on every serving device and time each path "
        "(representation @ device) at each batch size: median, p95 and p99 over --repeats "
        "calls on rows of a dataset split (the artifact's own dataset when found, else random "
        "valid ids). Models run in one worker process per device, as `hotrec serve` runs them "
        "(--inline: in this process, as `serve --inline`), so the times include what serving "
        "pays. Latency is made non-decreasing in batch size (a running maximum smooths "
        "timing noise). Adds each representation's validation accuracy and AUC from the "
        "artifact. `hotrec serve --profile` reads the file.",
    )
    p.add_argument("artifact", type=Path, metavar="ARTIFACT", help="artifact directory")
    p.add_argument("--out", type=Path, default=Path("profile.json"), help="profile file to write")
    p.add_argument("--devices", default="auto", help="auto (cpu, + cuda if present) or a list")
    p.add_argument("--representations", default=None, help="profile only these (comma list)")
    p.add_argument(
        "--batch-sizes",
        default=",".join(str(2**i) for i in range(13)),
        help="comma list (default powers of 2 from 1 to 4096)",
    )
    p.add_argument("--max-batch", type=int, default=4096, help="largest batch of a path (4096)")
    p.add_argument("--repeats", type=int, default=30, help="timed calls per point (30)")
    p.add_argument("--max-seconds", type=float, default=2.0, help="time budget per point (2)")
    p.add_argument("--data", type=Path, default=None, help="dataset to draw inputs from")
    p.add_argument("--split", default="val", help="split of --data (val)")
    add_model_options(p)
    p.add_argument(
        "--inline", action="store_true",
        help="time the models in this process (for `hotrec serve --inline`)",
    )  # fmt: skip
    p.set_defaults(run=run)


def add_model_options(p) -> None:
    """The options of how the models run, shared with `hotrec serve`."""
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument(
        "--mp-cache", type=int, default=4096, metavar="N",
        help="dhe/hybrid: cache the decoder outputs of the N most popular ids of each feature, "
        "counted on the artifact's training data (MP-Cache: the decoder's own outputs); "
        "0 = off (4096)",
    )  # fmt: skip


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise HotrecError(f"--batch-sizes takes a comma list of integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise HotrecError(f"--batch-sizes must be positive integers, got {text!r}")
    return sizes


def dataset_inputs(predictor, data: Path | None, split: str):
    """(dense, sparse) rows to time on: --data, else the artifact's dataset, else None."""
    from hotrec.data.format import open_dataset
    from hotrec.serving.bag_ids import split_ids

    path = data or (Path(predictor.dataset) if predictor.dataset else None)
    if path is None or (data is None and not (path / "meta.json").is_file()):
        return None
    ds = open_dataset(path)
    if not ds.has_split(split):
        if data is None:
            return None
        raise HotrecError(f"{path} has no rows in split {split!r}")
    if ds.schema != predictor.schema:
        raise HotrecError(f"{path} does not have the artifact's schema (features / tables)")
    arrays = ds.split(split)
    n = min(len(arrays), 65536)
    return arrays.dense[:n], split_ids(arrays, slice(0, n))


def quick_profile(predictor, inputs=None):
    """A short profile for `hotrec serve` started without --profile."""
    from hotrec.serving.profiler import LatencyProfiler

    sizes = tuple(b for b in QUICK_SIZES if b <= max(p.max_batch for p in predictor.paths))
    return LatencyProfiler(sizes, repeats=10, max_seconds=0.5).fit(predictor, None, inputs).profile_


def run(args: argparse.Namespace) -> int:
    import torch

    from hotrec.cli.report import console
    from hotrec.serving.paths import resolve_devices
    from hotrec.serving.predictor import Predictor
    from hotrec.serving.profiler import LatencyProfiler
    from hotrec.serving.workers import WorkerPool

    sizes = parse_sizes(args.batch_sizes)
    if args.repeats < 1 or args.max_batch < 1:
        raise HotrecError("--repeats and --max-batch must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = [r.strip() for r in args.representations.split(",")] if args.representations else None
    devices = resolve_devices(args.devices)
    if args.mp_cache < 0:
        raise HotrecError(f"--mp-cache must be >= 0, got {args.mp_cache}")
    predictor = Predictor.load(
        args.artifact, reps, devices, args.max_batch, models=args.inline, mp_cache=args.mp_cache
    )
    pool = None
    if not args.inline:  # the models run where `hotrec serve` runs them: worker processes
        pool = WorkerPool(
            args.artifact, reps, devices, args.max_batch, args.threads, args.mp_cache
        ).start()
        pool.attach(predictor)
    try:
        inputs = dataset_inputs(predictor, args.data, args.split)
        profiler = LatencyProfiler(sizes, args.repeats, max_seconds=args.max_seconds)
        profile = profiler.fit(predictor, None, inputs).profile_
    finally:
        if pool is not None:
            pool.close()
    profile.meta["models"] = "in this process" if args.inline else "worker processes"
    profile.meta["mp_cache"] = {"per_feature": args.mp_cache, "cached_ids": predictor.mp_cache}
    profile.meta["inputs"] = "dataset" if inputs is not None else "random ids"
    profile.meta["torch_threads"] = torch.get_num_threads()
    profile.save(args.out)
    print_profile(profile, console)
    console.print(f"wrote {args.out}")
    return 0


def print_profile(profile, console) -> None:
    """Median latency at a few batch sizes, p99 at the largest, and the best items/s."""
    from rich.table import Table

    table = Table(title="serving paths: median latency (ms) by batch size")
    first = next(iter(profile.paths.values()))
    shown = [b for b in first.batch_sizes if b in (1, 16, 256, 1024, 4096)] or first.batch_sizes
    cols = ("path", "acc", "AUC", *(str(b) for b in shown), "p99 max", "items/s")
    table.add_column(cols[0], no_wrap=True)  # a path name stays whole
    for col in cols[1:]:
        table.add_column(col, justify="right")
    for name, p in profile.paths.items():
        med = dict(zip(p.batch_sizes, p.latency["median"], strict=True))
        cells = [f"{med[b]:.2f}" if b in med else "-" for b in shown]
        rate = max(b / (m / 1e3) for b, m in med.items())
        table.add_row(name, f"{p.accuracy:.4f}", f"{p.auc:.4f}", *cells,
                      f"{p.latency['p99'][-1]:.2f}", f"{rate / 1e3:,.0f}k")  # fmt: skip
    console.print(table)
