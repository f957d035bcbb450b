"""The placement planner's cost model: predicted step time and bytes moved per schedule.

Pure arithmetic over measured rates (`Rates`, measured by training/plan.py on the machine)
and the data's popularity (`Popularity`, per hot budget, measured on held-out inputs). Per
mini-batch of B inputs with K lookups each, rows of D values of 4 bytes:

  baseline     net + BK (gather + update on host) + 2 BK D 4 bytes over the link
  device_only  net; only when the tables and their optimizer state fit
  fae          per epoch a share h_in of all-hot batches at device speed (net); the cold
               batches gather and update their cold lookups on the host (hot ones: replica)
  hotline      net + the unique cold rows gathered and copied (hidden behind the network
               where the device has its own memory and a side stream) + the cold lookups'
               gradients copied back and applied on host; on such a device the batch runs as
               two micro-batches (popular, non-popular), so the network's fixed cost of a
               pass (`pass`) is paid once more (not with placement.hotline_split=fused)

`net` is measured with every row on the device, so it includes the device-side row work;
`pass` is the part of it that does not grow with the batch (op dispatch, kernel launches),
from `net` measured again at an eighth of the batch.

The host device has no link: copies cost nothing and nothing overlaps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

SCHEDULES = ("baseline", "device_only", "fae", "hotline")
BYTES_PER_VALUE = 4
DEVICE_HEADROOM = 0.85  # share of free device memory tables may take (as device_only checks)


@dataclass(frozen=True)
class Rates:
    """What the machine does, measured."""

    device: str
    net_step_s: float  # one batch's forward, backward and updates, every row on the device
    host_gather_s_per_row: float  # one row gathered from the host store
    host_update_s_per_row: float  # one looked-up row's gradient applied on host (optimizer)
    h2d_bytes_per_s: float | None  # None: device memory is host memory (no copy)
    d2h_bytes_per_s: float | None
    overlaps: bool  # a side stream can hide host work behind device compute
    device_free_bytes: int | None  # None: host memory (tables always fit)
    net_pass_s: float = 0.0  # the network step's cost that does not grow with the batch


@dataclass(frozen=True)
class Shape:
    """The data and model, as the cost model needs them."""

    batch_size: int
    lookups: float  # K: lookups per input (multi-hot: the mean over the training split)
    dim: int
    rows: int  # embedding rows of all tables
    table_bytes: int  # rows and their optimizer state
    train_rows: int

    @property
    def weight_bytes(self) -> int:
        return self.rows * self.dim * BYTES_PER_VALUE


@dataclass(frozen=True)
class Popularity:
    """Hot-set shares under one budget, measured on held-out inputs."""

    budget_bytes: int
    hot_rows: int
    lookup_share: float  # h: share of lookups that hit a hot row
    input_share: float  # h_in: share of inputs whose lookups are all hot
    unique_cold_per_batch: float  # distinct cold rows in one mini-batch (hotline's gather)


@dataclass(frozen=True)
class Prediction:
    schedule: str
    budget_bytes: int | None
    step_s: float | None  # None: does not fit
    samples_per_s: float | None
    h2d_bytes_per_step: float
    d2h_bytes_per_step: float
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _copy_s(nbytes: float, rate: float | None) -> float:
    return 0.0 if rate is None else nbytes / rate


def predict(
    schedule: str, shape: Shape, rates: Rates, pop: Popularity | None, hotline_split: bool = True
) -> Prediction:
    """The predicted step time of `schedule` (pop: the hot budget's shares, for fae/hotline;
    hotline_split False: `placement.hotline_split=fused`, one pass of the network anywhere)."""
    n = shape.batch_size * shape.lookups  # lookups per batch
    row = shape.dim * BYTES_PER_VALUE
    host_row = rates.host_gather_s_per_row + rates.host_update_s_per_row
    net = rates.net_step_s
    budget = pop.budget_bytes if pop is not None else None

    def done(step_s: float, h2d: float, d2h: float, note: str = "") -> Prediction:
        rate = shape.batch_size / step_s if step_s > 0 else None
        return Prediction(schedule, budget, step_s, rate, h2d, d2h, note)

    if schedule == "baseline":
        moved = n * row
        t = net + n * host_row + _copy_s(moved, rates.h2d_bytes_per_s)
        return done(t + _copy_s(moved, rates.d2h_bytes_per_s), moved, moved)
    if schedule == "device_only":
        free = rates.device_free_bytes
        if free is not None and shape.table_bytes > DEVICE_HEADROOM * free:
            return Prediction(schedule, None, None, None, 0.0, 0.0,
                              "the tables do not fit in device memory")  # fmt: skip
        return done(net, 0.0, 0.0)
    if pop is None:
        raise ValueError(f"{schedule} needs the hot budget's popularity")
    h, h_in = pop.lookup_share, pop.input_share
    cold = n * (1 - h)  # cold lookups per batch, on average
    if schedule == "fae":
        # every cold lookup sits in a cold batch: per cold batch, cold / (1 - h_in) of them
        cold_in_cold = cold / max(1 - h_in, 1e-9)
        moved = cold_in_cold * row
        cold_step = (
            net
            + cold_in_cold * host_row
            + _copy_s(moved, rates.h2d_bytes_per_s)
            + _copy_s(moved, rates.d2h_bytes_per_s)
        )
        t = h_in * net + (1 - h_in) * cold_step
        return done(t, (1 - h_in) * moved, (1 - h_in) * moved)
    if schedule == "hotline":
        gathered = pop.unique_cold_per_batch
        ahead = gathered * rates.host_gather_s_per_row
        ahead += _copy_s(gathered * row, rates.h2d_bytes_per_s)
        back = cold * rates.host_update_s_per_row + _copy_s(cold * row, rates.d2h_bytes_per_s)
        if rates.overlaps:  # split into two micro-batches: one more pass of the network
            t = max(net + (rates.net_pass_s if hotline_split else 0.0), ahead) + back
        else:  # the host: one fused pass, nothing hidden
            t = net + ahead + back
        return done(t, gathered * row, cold * row)
    raise ValueError(f"unknown schedule {schedule!r}")


def plan(shape: Shape, rates: Rates, budgets: list[Popularity], hotline_split: bool = True) -> dict:
    """Every schedule's prediction (fae and hotline under each budget) and a recommendation:
    the fastest predicted, device_only first among near-equals (it is the simplest)."""
    preds = [predict("baseline", shape, rates, None), predict("device_only", shape, rates, None)]
    for pop in budgets:
        preds.append(predict("fae", shape, rates, pop))
        preds.append(predict("hotline", shape, rates, pop, hotline_split))
    feasible = [p for p in preds if p.step_s is not None]
    best = min(feasible, key=lambda p: p.step_s)
    simple = next((p for p in feasible if p.schedule == "device_only"), None)
    if simple is not None and simple.step_s <= best.step_s * 1.02:
        best = simple
    return {"predictions": preds, "recommended": best}
