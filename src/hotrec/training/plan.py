"""What `hotrec plan` measures, in under a minute: the machine's rates and the data's popularity.

- the network: device_only steps of the configured model at the configured batch size on a
  copy of the data's shape with tables capped at NET_TABLE_ROWS rows (every row on the
  device, so the step includes the device-side row work); on a device other than the host,
  again at an eighth of the batch: the line through the two gives the cost of a pass that
  does not grow with the batch (what hotline's second micro-batch pays again);
- the host store: gathers and optimizer updates of rows drawn from the data's own lookups
  (folded into a table of at most HOST_TABLE_BYTES, so the skew and the cache misses are the
  data's);
- the link: pinned host-to-device and device-to-host copies of COPY_BYTES (none on the CPU);
- popularity: hot rows chosen on one seeded sample of the training split and their shares
  (lookups, all-hot inputs, distinct cold rows per batch) counted on another: the shares a
  run will see, not the sample's own (which the hot set was fitted to).

The cost model that turns these into predictions is placement/planner.py.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hotrec.config import RunConfig, replace
from hotrec.data.format import Dataset, DatasetWriter
from hotrec.data.loader import jagged_ids
from hotrec.device import Device, Readback, make_device
from hotrec.embeddings.store import EmbeddingStore
from hotrec.errors import HotrecError
from hotrec.placement.planner import BYTES_PER_VALUE, Popularity, Rates, Shape
from hotrec.placement.popularity import PopularityProfiler, capacity_for, top_rows
from hotrec.types import Schema, TableSpec

NET_TABLE_ROWS = 1000  # rows per table of the network's stand-in data
HOST_TABLE_BYTES = 256 << 20  # the host-store measurement's table
COPY_BYTES = 64 << 20  # one link measurement's copy
BATCHES = 24  # batches per measurement (after two warm-up ones)
POPULARITY_BATCHES = 64  # held-out batches counting distinct cold rows


def check_plannable(cfg: RunConfig) -> None:
    if cfg.model.embedding != "table":
        raise HotrecError(
            f"hotrec plan predicts the row placements of the table representation; "
            f"model.embedding is {cfg.model.embedding!r} (use --set model.embedding='table')"
        )


def shape_of(cfg: RunConfig, dataset: Dataset) -> Shape:
    rows = dataset.schema.total_rows
    dim = cfg.model.embedding_dim
    state = rows * 4 if cfg.optim.sparse == "adagrad" else 0
    train = dataset.split("train")
    lookups = dataset.schema.num_tables  # per input; multi-hot: the split's mean over bags
    if train.layout is not None and len(train):
        ids = sum(int(offsets[-1]) for _, offsets in train.bags)
        lookups = len(train.layout.one_hot) + ids / len(train)
    return Shape(
        batch_size=cfg.data.batch_size,
        lookups=lookups,
        dim=dim,
        rows=rows,
        table_bytes=rows * dim * BYTES_PER_VALUE + state,
        train_rows=len(train),
    )


# -- the network ------------------------------------------------------------------------------
def network_step_s(
    cfg: RunConfig,
    schema: Schema,
    workdir: Path,
    batches: int = BATCHES,
    bag_lengths: dict[int, int] | None = None,
    batch_size: int | None = None,
) -> float:
    """Seconds per device_only step on stand-in data of the same shape (median of steps), at
    `batch_size` (default: the configured one); a multi-hot table's bags hold
    `bag_lengths[t]` ids each (its mean, rounded)."""
    from hotrec.training.trainer import Trainer

    small = Schema(
        schema.dense_names,
        tuple(TableSpec(t.name, min(t.rows, NET_TABLE_ROWS), t.pooling) for t in schema.tables),
    )
    rng = np.random.default_rng(0)
    batch_size = batch_size or cfg.data.batch_size
    n = (batches + 2) * batch_size
    data = workdir / "standin"
    sizes = {t: (bag_lengths or {}).get(t, 1) for t in small.bag_tables}
    with DatasetWriter(data) as w:
        for split, rows in (("train", n), ("val", 16)):
            a = w.create_split(split, rows, small, {t: rows * k for t, k in sizes.items()})
            ids = [rng.integers(0, small.tables[t].rows, rows) for t in small.one_hot_tables]
            a.sparse[:] = np.stack(ids, axis=1) if ids else a.sparse
            for (values, offsets), t in zip(a.bags, small.bag_tables, strict=True):
                values[:] = rng.integers(0, small.tables[t].rows, len(values))
                offsets[:] = np.arange(rows + 1) * sizes[t]
            a.dense[:] = rng.random((rows, small.num_dense), dtype=np.float32)
            a.label[:] = rng.random(rows) < 0.25
        w.commit(small, {"source": "hotrec plan stand-in"})
    run = replace(
        cfg,
        data={"path": str(data), "shuffle": False, "batch_size": batch_size},
        train={"checkpoint_every": 0, "eval_every": 0},
        placement={"schedule": "device_only", "slipstream": False, "hotset": ""},
    )
    trainer = Trainer(run, workdir / "standin-run")
    items = [b for b, _ in zip(trainer.train_loader.epoch(0), range(batches + 2), strict=False)]
    for b in items[:2]:
        trainer.step(b)
    times = []
    for b in items[2:]:
        start = time.perf_counter()
        trainer.step(b)  # ends with the step's one host wait: the device work is done
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# -- the host store ---------------------------------------------------------------------------
def host_row_s(
    lookups: np.ndarray, dim: int, optimizer: str, batch_lookups: int
) -> tuple[float, float]:
    """(gather, update) seconds per looked-up row of the host store, on the data's own
    lookups folded into a table of at most HOST_TABLE_BYTES."""
    cap = max(1, HOST_TABLE_BYTES // (dim * BYTES_PER_VALUE))
    ids = torch.from_numpy(lookups.reshape(-1) % cap)
    rows = int(min(cap, int(ids.max()) + 1)) if len(ids) else 1
    store = EmbeddingStore([rows], dim, optimizer, lr=0.01)
    batches = [ids[a : a + batch_lookups] for a in range(0, len(ids), batch_lookups)]
    batches = [b for b in batches if len(b) == batch_lookups][:BATCHES] or [ids]
    grads = torch.randn(len(batches[0]), dim) * 1e-3
    gather = update = 0.0
    store.gather(batches[0])
    for b in batches:
        start = time.perf_counter()
        store.gather(b)
        mid = time.perf_counter()
        store.update(b, grads[: len(b)])
        gather, update = gather + mid - start, update + time.perf_counter() - mid
    n = sum(len(b) for b in batches)
    return gather / n, update / n


# -- the link ---------------------------------------------------------------------------------
def link_rates(device: Device, nbytes: int = COPY_BYTES, repeats: int = 5):
    """(host-to-device, device-to-host) bytes/s of pinned copies; (None, None) on the CPU."""
    if device.is_host:
        return None, None
    src = device.pinned((nbytes // 4,), torch.float32)
    src.fill_(1.0)
    back = Readback(device)
    up, down = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        moved, ready = device.copy_to_device_async(src)
        device.host_wait(ready)
        mid = time.perf_counter()
        _, ready = back.copy(moved)
        device.host_wait(ready)
        up.append(mid - start)
        down.append(time.perf_counter() - mid)
    return nbytes / float(np.median(up)), nbytes / float(np.median(down))


# -- popularity -------------------------------------------------------------------------------
def popularity(
    cfg: RunConfig, dataset: Dataset, budgets: list[int]
) -> tuple[list[Popularity], np.ndarray]:
    """Shares under each budget, hot rows fitted on one sample and counted on another; and
    the held-out lookups (global rows [S, K]) for the host-store measurement."""
    p = cfg.placement
    train = dataset.split("train")
    rows = list(dataset.schema.table_rows)
    bags = None
    if train.layout is not None:  # multi-hot: every id of every bag is a lookup
        bags = lambda a, b: jagged_ids(train, slice(a, b))  # noqa: E731
    fit = PopularityProfiler(p.sample_fraction, cfg.train.seed).fit(train.sparse, rows, bags=bags)
    held = PopularityProfiler(p.sample_fraction, cfg.train.seed + 1)
    held.fit(train.sparse, rows, bags=bags)
    lookups = held.sample_global_ids_  # [S, K] (multi-hot: [S, W], padded)
    real = np.arange(lookups.shape[1])[None, :] < held.sample_lookups_[:, None]  # [S, K]
    order = np.argsort(-fit.counts_, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    worst = rank[lookups]  # [S, K] rank of each lookup's row in the fitted hot order
    bs = cfg.data.batch_size
    out = []
    for budget in budgets:
        capacity = min(capacity_for(budget, cfg.model.embedding_dim), int((fit.counts_ > 0).sum()))
        hot = worst < capacity  # [S, K]
        distinct = [
            len(np.unique(lookups[a : a + bs][~hot[a : a + bs] & real[a : a + bs]]))
            for a in range(0, min(len(lookups), POPULARITY_BATCHES * bs), bs)
        ]
        out.append(
            Popularity(
                budget_bytes=int(budget),
                hot_rows=len(top_rows(fit.counts_, capacity)),
                lookup_share=float(hot[real].mean()) if real.any() else 0.0,
                input_share=float(hot.all(axis=1).mean()) if len(hot) else 0.0,
                unique_cold_per_batch=float(np.mean(distinct)) if distinct else 0.0,
            )
        )
    return out, lookups[real]  # every real lookup, in input order


def mean_bags(dataset: Dataset) -> dict[int, int]:
    """Each multi-hot table's mean ids per input on the training split, rounded (at least 1)."""
    train = dataset.split("train")
    return {
        t: max(1, round(int(offsets[-1]) / max(len(train), 1)))
        for (_, offsets), t in zip(train.bags, dataset.schema.bag_tables, strict=True)
    }


def default_budgets(cfg: RunConfig, shape: Shape, device: Device) -> list[int]:
    """The configured hot budget, about 1/64, 1/16 and 1/4 of the tables' weights and half of
    the device's free memory when that is less than the tables (each rounded down to a power
    of 2, so the command line says it exactly)."""
    from hotrec.placement.popularity import parse_bytes

    def pow2(n: int) -> int:
        return 1 << (max(n, 1).bit_length() - 1)

    weights = shape.weight_bytes
    budgets = {parse_bytes(cfg.placement.hot_budget)} | {pow2(weights // k) for k in (64, 16, 4)}
    free = device.memory_free()
    if free is not None and free // 2 < weights:
        budgets.add(pow2(free // 2))
    row = shape.dim * BYTES_PER_VALUE
    return sorted(b for b in budgets if row <= b < weights)


def measure(cfg: RunConfig, dataset: Dataset, budgets: list[int] | None, progress=None):
    """(shape, rates, popularity per budget) for `cfg` on `dataset`."""
    check_plannable(cfg)
    say = progress or (lambda message: None)
    device = make_device(cfg.train.device)
    shape = shape_of(cfg, dataset)
    chosen = budgets or default_budgets(cfg, shape, device)
    say("counting popularity (two seeded samples of the training split)")
    pops, lookups = popularity(cfg, dataset, chosen)
    if not budgets:  # of the default budgets, one that holds every sampled row is enough
        pops = [p for i, p in enumerate(pops) if i == 0 or p.hot_rows > pops[i - 1].hot_rows]
    say("timing the host store's gathers and updates")
    per_batch = max(1, round(shape.batch_size * shape.lookups))
    gather, update = host_row_s(lookups, shape.dim, cfg.optim.sparse, per_batch)
    say("timing copies between host and device")
    h2d, d2h = link_rates(device)
    say("timing the network's steps")
    bags, b = mean_bags(dataset), shape.batch_size
    with tempfile.TemporaryDirectory(prefix="hotrec-plan-") as tmp:
        net = network_step_s(cfg, dataset.schema, Path(tmp), bag_lengths=bags)
        pass_s = 0.0
        if not device.is_host and b >= 16:  # the host runs hotline as one pass
            (Path(tmp) / "small").mkdir()
            small = network_step_s(cfg, dataset.schema, Path(tmp) / "small", bag_lengths=bags,
                                   batch_size=b // 8)  # fmt: skip
            pass_s = pass_cost_s(b, net, b // 8, small)
    rates = Rates(
        device=str(device),
        net_step_s=net,
        host_gather_s_per_row=gather,
        host_update_s_per_row=update,
        h2d_bytes_per_s=h2d,
        d2h_bytes_per_s=d2h,
        overlaps=not device.is_host,
        device_free_bytes=device.memory_free(),
        net_pass_s=pass_s,
    )
    return shape, rates, pops


def pass_cost_s(big: int, big_s: float, small: int, small_s: float) -> float:
    """The step time at zero batch on the line through (small, small_s) and (big, big_s):
    what a pass costs whatever its size (0 when noise puts the line below zero)."""
    per_input = (big_s - small_s) / (big - small)
    return max(0.0, min(small_s - small * per_input, big_s))
