"""Compaction: the inputs the Slipstream filter keeps, re-packed into full mini-batches.

Dropping skipped inputs from each batch keeps every step (its kernel launches, its per-step
overhead) and only makes batches smaller, so the skipped share hardly became time. Here the
kept inputs queue in arrival order and a step runs each time a full batch has gathered; the
epoch's last arrival takes what is left (up to 2B - 1 inputs in one step). Skipped inputs
then remove whole steps. The queue holds rows of the training split, so a checkpoint keeps
it (a resumed run trains the queued inputs) and a step's batch is read again from the
memory-mapped split, exactly as the loader read it.
"""

from __future__ import annotations

import numpy as np
import torch

EMPTY = np.zeros(0, dtype=np.int64)


class Compactor:
    """Rows of kept inputs, queued in arrival order until a full batch of `size` gathered."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows = EMPTY

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, rows: np.ndarray, last: bool = False) -> np.ndarray | None:
        """Queue `rows`; the rows of the next step when a full batch gathered (every queued
        row when `last`, the epoch's last arrival), else None."""
        queued = np.concatenate([self.rows, np.asarray(rows, dtype=np.int64)])
        if last:
            take, self.rows = queued, EMPTY
        elif len(queued) >= self.size:
            take, self.rows = queued[: self.size], queued[self.size :]
        else:
            self.rows = queued
            return None
        return take if len(take) else None

    def state(self) -> dict:
        return {"compact_rows": torch.from_numpy(self.rows.copy())}

    def load_state(self, state: dict) -> None:
        rows = state.get("compact_rows")
        self.rows = EMPTY if rows is None else rows.numpy().astype(np.int64)
