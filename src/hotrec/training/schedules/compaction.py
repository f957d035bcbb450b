"""Compaction: the inputs the Slipstream filter keeps, re-packed into full mini-batches.

Dropping skipped inputs from each batch keeps every step (its kernel launches, its per-step
overhead) and only makes batches smaller, so the skipped share hardly became time. Here the
kept inputs queue in arrival order and a step runs each time a full batch has gathered; the
epoch's last arrival takes what is left (up to 2B - 1 inputs in one step). Skipped inputs
then remove whole steps. The queue holds rows of the training split, so a checkpoint keeps
it (a resumed run trains the queued inputs) and a step's batch is read again from the
memory-mapped split, exactly as the loader read it.

Fewer steps would also move the model less per epoch. Each queued input carries the weight
of its arrival (arrival size / inputs kept of it): a step's learning rate is scaled by the
mean weight of its inputs, so every arrival moves the model as far as one step of the base
schedule does, whatever was skipped from it (as training what is left of each batch does).
"""

from __future__ import annotations

import numpy as np
import torch

EMPTY = np.zeros(0, dtype=np.int64)


class Compactor:
    """Rows of kept inputs (and their weights), queued in arrival order until a full batch of
    `size` gathered."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows = EMPTY
        self.weights = np.zeros(0, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.rows)

    def add(
        self, rows: np.ndarray, last: bool = False, weight: float = 1.0
    ) -> tuple[np.ndarray, float] | None:
        """Queue `rows`, each of `weight`; (the rows of the next step, their mean weight) when
        a full batch gathered (every queued row when `last`, the epoch's last arrival), else
        None."""
        rows = np.asarray(rows, dtype=np.int64)
        queued = np.concatenate([self.rows, rows])
        weights = np.concatenate([self.weights, np.full(len(rows), weight, np.float64)])
        if last:
            cut = len(queued)
        elif len(queued) >= self.size:
            cut = self.size
        else:
            self.rows, self.weights = queued, weights
            return None
        self.rows, self.weights = queued[cut:], weights[cut:]
        return (queued[:cut], float(weights[:cut].mean())) if cut else None

    def state(self) -> dict:
        return {
            "compact_rows": torch.from_numpy(self.rows.copy()),
            "compact_weights": torch.from_numpy(self.weights.copy()),
        }

    def load_state(self, state: dict) -> None:
        rows, weights = state.get("compact_rows"), state.get("compact_weights")
        self.rows = EMPTY if rows is None else rows.numpy().astype(np.int64)
        self.weights = np.ones(len(self.rows)) if weights is None else weights.numpy().copy()
