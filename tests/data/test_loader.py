import numpy as np
import pytest
import torch

from hotrec.data.format import SplitArrays, open_dataset
from hotrec.data.loader import BatchLoader


def arrays(n=103, t=3):
    return SplitArrays(
        dense=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
        sparse=np.arange(n * t, dtype=np.int32).reshape(n, t),
        label=(np.arange(n) % 2).astype(np.float32),
    )


def rows_of(batches):
    return torch.cat([b.dense[:, 0] for b in batches]).long().div(2, rounding_mode="floor")


@pytest.mark.parametrize("prefetch", [0, 3])
def test_every_row_once_per_epoch_with_block_shuffle(prefetch):
    loader = BatchLoader(arrays(), batch_size=10, shuffle=True, seed=1, prefetch=prefetch)
    assert len(loader) == 11
    batches = list(loader.epoch(0))
    assert sorted(rows_of(batches).tolist()) == list(range(103))
    assert batches[0].sparse.dtype == torch.int64 and batches[0].dense.dtype == torch.float32
    # Order differs between epochs, is the same for the same epoch, and prefetch does not matter.
    assert rows_of(batches).tolist() != rows_of(loader.epoch(1)).tolist()
    inline = BatchLoader(arrays(), batch_size=10, shuffle=True, seed=1, prefetch=0)
    assert rows_of(inline.epoch(0)).tolist() == rows_of(batches).tolist()


def test_start_skips_batches_for_resume():
    loader = BatchLoader(arrays(), batch_size=10, shuffle=True, seed=4)
    full = [b.label.tolist() for b in loader.epoch(2)]
    tail = [b.label.tolist() for b in loader.epoch(2, start=4)]
    assert tail == full[4:]


def test_no_shuffle_is_file_order_and_max_rows_caps():
    loader = BatchLoader(arrays(), batch_size=25, max_rows=60)
    assert rows_of(loader.epoch(0)).tolist() == list(range(60))


def test_worker_errors_reach_the_consumer():
    bad = arrays()
    bad.sparse = None  # slicing fails inside the worker thread
    with pytest.raises(TypeError):
        list(BatchLoader(bad, batch_size=10, prefetch=2).epoch(0))


def test_reads_a_real_dataset_directory(toy_dataset):
    ds = open_dataset(toy_dataset)
    train = ds.split("train")
    assert isinstance(train.dense, np.memmap)
    batch = next(iter(BatchLoader(train, batch_size=64)))
    assert batch.sparse.shape == (64, ds.schema.num_tables)


def test_prefetch_threads_run_torch_on_one_thread_and_leave_the_caller_alone():
    import threading

    import torch

    from hotrec.data.loader import prefetched
    from hotrec.threads import _runtime

    main_threads = torch.get_num_threads()
    seen = list(prefetched(lambda _: torch.get_num_threads(), range(3), depth=2))
    assert seen == ([1, 1, 1] if _runtime() is not None else [main_threads] * 3)
    assert torch.get_num_threads() == main_threads  # per thread: the caller keeps its team
    other = []
    t = threading.Thread(target=lambda: other.append(torch.get_num_threads()))
    t.start()
    t.join()
    assert other == [main_threads]  # a plain thread is untouched too
