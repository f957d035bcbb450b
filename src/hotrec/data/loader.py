"""Mini-batches by slicing memory-mapped splits, with a seeded block shuffle and prefetching."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from hotrec.data.format import SplitArrays
from hotrec.data.jagged import sample_major, take_rows
from hotrec.threads import one_openmp_thread
from hotrec.types import Batch


class BatchLoader:
    """Batches of one split. Each batch is one contiguous, batch-sized block of rows, so
    building it is a slice of the memory maps; shuffling permutes the blocks per epoch
    with a generator seeded by (seed, epoch), which makes any epoch reproducible and lets
    a resumed run start at any batch index. With `part` = (rank, world), each block is a
    global batch and this loader yields rank's contiguous part of it (distributed runs).
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
        part: tuple[int, int] = (0, 1),
    ) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        self.part = part  # (rank, world): this rank's contiguous part of every batch
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
        rank, world = self.part
        if world > 1:  # rank r of W reads rows [a + n r / W, a + n (r + 1) / W) of the block
            a, b = a + (b - a) * rank // world, a + (b - a) * (rank + 1) // world
        return make_batch(self.arrays, slice(a, b), self.pin_memory)

    def epoch(self, epoch: int = 0, start: int = 0, transform: Callable | None = None) -> Iterator:
        """Batches of one epoch from position `start` on (resume), prefetched in a thread;
        with `transform`, transform(batch) for each, computed in that thread too."""
        blocks = [int(i) for i in self.batch_order(epoch)[start:]]
        return prefetched(_then(self.load, transform), blocks, self.prefetch)

    def __iter__(self) -> Iterator[Batch]:
        return self.epoch(0)


def make_batch(arrays: SplitArrays, rows: slice | np.ndarray, pin_memory: bool = False) -> Batch:
    """Rows of a split (a slice: zero-copy view until converted; or an index array) as a Batch."""
    ids = arrays.sparse[rows].astype(np.int64)
    arrays.check_ids(ids, rows)
    batch = Batch(
        dense=torch.from_numpy(np.asarray(arrays.dense[rows], dtype=np.float32).copy()),
        sparse=torch.from_numpy(ids),
        label=torch.from_numpy(np.asarray(arrays.label[rows], dtype=np.float32).copy()),
        bags=None if arrays.layout is None else _bags(arrays, ids, rows),
    )
    return batch.pin_memory() if pin_memory else batch


def jagged_ids(arrays: SplitArrays, rows: slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every table's ids of `rows` of a split with bag tables, sample-major: (ids [M],
    lengths [n, T]) as numpy arrays (what profiling and classification read)."""
    ids = arrays.sparse[rows].astype(np.int64)
    arrays.check_ids(ids, rows)
    bags = _bags(arrays, ids, rows)
    return bags.values.numpy(), bags.lengths.numpy()


def _bags(arrays: SplitArrays, one_hot: np.ndarray, rows: slice | np.ndarray):
    """Every table's ids of `rows` as sample-major Bags (a split with bag tables)."""
    bags = [take_rows(values, offsets, rows) for values, offsets in arrays.bags]
    for j, (values, _) in enumerate(bags):
        arrays.check_bag_ids(j, values)
    layout = arrays.layout
    return sample_major(one_hot, layout.one_hot, bags, layout.bag, layout.num_tables)


class IndexBatches:
    """Batches given as arrays of row indices, e.g. FAE's separate hot and cold streams; with
    `part` = (rank, world), rank's contiguous part of each (as BatchLoader cuts a block)."""

    def __init__(
        self,
        arrays: SplitArrays,
        prefetch: int = 4,
        pin_memory: bool = False,
        part: tuple[int, int] = (0, 1),
    ) -> None:
        self.arrays, self.prefetch, self.pin_memory = arrays, prefetch, pin_memory
        self.part = part

    def load(self, rows: np.ndarray) -> Batch:
        rank, world = self.part
        n = len(rows)
        rows = rows[n * rank // world : n * (rank + 1) // world]
        return make_batch(self.arrays, rows, self.pin_memory)

    def iterate(
        self, index_batches: list[np.ndarray], transform: Callable | None = None
    ) -> Iterator:
        return prefetched(_then(self.load, transform), index_batches, self.prefetch)


def _then(load: Callable, transform: Callable | None) -> Callable:
    if transform is None:
        return load
    return lambda x: transform(load(x))


_DONE = object()


def prefetched(fn, items: Iterable, depth: int) -> Iterator:
    """fn(item) for each item, computed `depth` items ahead in a background thread
    (inline when depth <= 0). Errors in the thread are raised in the consumer."""
    if depth <= 0:
        return (fn(x) for x in items)
    return _threaded(fn, items, depth)


def _threaded(fn, items: Iterable, depth: int) -> Iterator:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        one_openmp_thread()  # beside the training step, not competing with its thread team
        try:
            for x in items:
                if stop.is_set():
                    return
                q.put(fn(x))
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
