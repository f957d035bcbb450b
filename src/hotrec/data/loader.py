"""Mini-batches by slicing memory-mapped splits, with a seeded block shuffle and prefetching."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import numpy as np
import torch

from hotrec.data.format import SplitArrays
from hotrec.types import Batch


class BatchLoader:
    """Batches of one split. Each batch is one contiguous, batch-sized block of rows, so
    building it is a slice of the memory maps; shuffling permutes the blocks per epoch
    with a generator seeded by (seed, epoch), which makes any epoch reproducible and lets
    a resumed run start at any batch index.
    """

    def __init__(
        self,
        arrays: SplitArrays,
        batch_size: int,
        shuffle: bool = False,
        seed: int = 0,
        prefetch: int = 4,
        pin_memory: bool = False,
        max_rows: int = 0,
    ) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.arrays = arrays
        self.rows = len(arrays) if max_rows <= 0 else min(max_rows, len(arrays))
        self.batch_size = batch_size
        self.shuffle, self.seed = shuffle, seed
        self.prefetch, self.pin_memory = prefetch, pin_memory

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def batch_order(self, epoch: int) -> np.ndarray:
        """Block indices in the order epoch `epoch` visits them."""
        if not self.shuffle:
            return np.arange(len(self))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self))

    def load(self, block: int) -> Batch:
        """Materialize one block as a Batch (int64 ids, float32 dense and labels)."""
        a = block * self.batch_size
        b = min(a + self.batch_size, self.rows)
        batch = Batch(
            dense=torch.from_numpy(np.array(self.arrays.dense[a:b], dtype=np.float32)),
            sparse=torch.from_numpy(self.arrays.sparse[a:b].astype(np.int64)),
            label=torch.from_numpy(np.array(self.arrays.label[a:b], dtype=np.float32)),
        )
        return batch.pin_memory() if self.pin_memory else batch

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """Batches of one epoch from position `start` on (resume), prefetched in a thread."""
        blocks = self.batch_order(epoch)[start:]
        if self.prefetch <= 0:
            return (self.load(int(i)) for i in blocks)
        return _prefetched(self.load, blocks, self.prefetch)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


_DONE = object()


def _prefetched(load, blocks: np.ndarray, depth: int) -> Iterator[Batch]:
    """Run `load` over `blocks` in a background thread, `depth` batches ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        try:
            for i in blocks:
                if stop.is_set():
                    return
                q.put(load(int(i)))
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    thread = threading.Thread(target=worker, daemon=True, name="hotrec-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a worker waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.01)
