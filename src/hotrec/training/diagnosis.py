"""Why the loss became NaN or infinite: the first non-finite input (file, row, column), else
the first non-finite parameter, else the learning rate; with the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from hotrec.data.format import Dataset
from hotrec.errors import HotrecError
from hotrec.integrity import non_finite_entry
from hotrec.training import runlog
from hotrec.training.checkpoint import load_checkpoint


def why_non_finite(batch, model: nn.Module, dataset: Dataset, run_dir: Path) -> str:
    """The cause of a non-finite loss on `batch` (a batch or a prepared item) and what to do."""
    good = last_good(run_dir)
    dense = getattr(getattr(batch, "batch", batch), "dense", None)  # a prepared item
    if isinstance(dense, torch.Tensor) and not bool(torch.isfinite(dense).all()):
        where = first_non_finite_row(dataset.split("train"), dataset.path)
        return f"{where}; fix the data or prepare it again ({good})"
    bad = non_finite_entry(dict(model.named_parameters()))
    if bad:
        return (
            f"parameter {bad} became NaN or infinite: lower the learning rate and resume "
            f"from the {good}"
        )
    return f"lower the learning rate and resume from the {good}"


def last_good(run_dir: Path) -> str:
    path = Path(run_dir) / runlog.CHECKPOINT
    if not path.exists():
        return "last good checkpoint: none was written yet"
    try:
        step = load_checkpoint(path)["state"].get("step", "?")
    except HotrecError as e:
        return f"last good checkpoint: none, the saved one is not usable: {e}"
    return f"last good checkpoint: {path} (step {step})"


def first_non_finite_row(arrays, dataset: Path) -> str:
    """The first non-finite dense value of the training split: file, row and column."""
    chunk = 1 << 18
    for a in range(0, len(arrays), chunk):
        block = np.asarray(arrays.dense[a : a + chunk])
        bad = ~np.isfinite(block)
        if bad.any():
            row, col = (int(x[0]) for x in np.nonzero(bad))
            count = int(bad.any(axis=1).sum())
            return (
                f"the input is not finite: {dataset}/train/dense.npy row {a + row} column {col} "
                f"holds {block[row, col]} ({count} such rows in rows {a}..{a + len(block) - 1})"
            )
    return "the batch's dense values were not finite"
