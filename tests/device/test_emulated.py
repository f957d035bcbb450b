"""The emulated device enforces what CUDA would: each rule has a case that passes and one that
must fail, and training on it is bit-identical to the CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hotrec.device import HostDevice, make_device
from hotrec.device.emulated import DeviceError, DeviceTensor, EmulatedDevice


@pytest.fixture
def dev() -> EmulatedDevice:
    return EmulatedDevice(bandwidth=1e9)


def test_device_tensors_compute_like_cpu_tensors(dev):
    a = torch.randn(4, 3)
    x = dev.to_device(a)
    assert isinstance(x, DeviceTensor) and x.device.type == "meta"
    y = (x * 2 + 1).sum(dim=0)
    assert isinstance(y, DeviceTensor)
    assert torch.equal(dev.to_host(y), (a * 2 + 1).sum(dim=0))
    x.add_(1)  # in place: the same wrapper
    assert torch.equal(dev.to_host(x), a + 1)


def test_mixing_host_and_device_tensors_raises(dev):
    x = dev.to_device(torch.ones(3))
    with pytest.raises(DeviceError, match="host tensor of shape"):
        x + torch.ones(3)
    assert torch.equal(dev.to_host(x + torch.tensor(2.0)), torch.full((3,), 3.0))  # 0-dim ok
    with pytest.raises(DeviceError, match="meta tensor"):
        x + torch.ones(3, device=x.device)  # a plain meta tensor, not device memory
    assert dev.to_host(torch.zeros_like(x)).sum() == 0  # factories from a device tensor ok


@pytest.mark.parametrize(
    "read",
    [
        lambda x: x.sum().item(),
        lambda x: bool(x[0] > 0),
        lambda x: torch.nonzero(x),
        lambda x: x[x > 0],
        lambda x: torch.unique(x),
        lambda x: torch.masked_select(x, x > 0),
        lambda x: x.cpu(),
        lambda x: torch.repeat_interleave(x.long().abs() % 3),
    ],
    ids=["item", "bool", "nonzero", "mask-index", "unique", "masked_select", "cpu", "rep-int"],
)
def test_device_to_host_reads_are_counted(dev, read):
    x = dev.to_device(torch.randn(8))
    dev.reset_counters()
    read(x)
    assert dev.syncs >= 1, dev.sync_ops


def test_index_work_without_reads_is_not_counted(dev):
    x = dev.to_device(torch.randn(8, 2))
    index = dev.to_device(torch.tensor([0, 3, 3, 7]))
    dev.reset_counters()
    y = x.index_select(0, index)
    x.index_add_(0, index, y)
    x.index_copy_(0, torch.zeros(0, dtype=torch.int64, out=index.new_empty(0)), y[:0])
    torch.where(x > 0, x, x * 0)
    assert dev.syncs == 0, dev.sync_ops


def test_blocking_host_to_device_copy_is_counted(dev):
    x = dev.zeros(3)
    dev.reset_counters()
    x.copy_(torch.ones(3))  # pageable, blocking
    assert dev.blocking_h2d == 1 and dev.syncs == 1
    staged = dev.stage(torch.ones(3))
    x.copy_(staged, non_blocking=True)  # pinned and non-blocking: no sync
    assert dev.syncs == 1


def test_async_copy_needs_pinned_memory_and_a_wait(dev):
    with pytest.raises(DeviceError, match="pageable"):
        dev.copy_to_device_async(torch.ones(3))
    src = dev.stage(torch.arange(6.0))
    assert dev.is_pinned(src) and not dev.is_pinned(torch.ones(2))
    out, ready = dev.copy_to_device_async(src)
    ready.flag.wait()  # the copy ran, but nobody waited on its event
    assert torch.isnan(out.inner).all()  # a consumer that forgets the wait reads NaN
    dev.wait(ready)
    assert torch.equal(dev.to_host(out), torch.arange(6.0))
    ints, ready = dev.copy_to_device_async(dev.stage(torch.arange(3)))
    assert (ints.inner == torch.iinfo(torch.int64).max).all()
    dev.wait(ready)
    assert ints.inner.tolist() == [0, 1, 2]


def test_changing_the_source_of_a_pending_copy_raises(dev):
    slow = EmulatedDevice(bandwidth=1e6)  # 8 KB: 8 ms
    src = slow.stage(torch.zeros(2048))
    _, ready = slow.copy_to_device_async(src)
    src.fill_(1.0)  # before the copy engine ran
    with pytest.raises(DeviceError, match="changed before the copy"):
        slow.wait(ready)


def test_copy_to_host_is_read_after_host_wait(dev):
    x = dev.to_device(torch.arange(4.0))
    dev.reset_counters()
    host, done = dev.copy_to_host_async(x)
    x.add_(10)  # later work on the stream does not change what the copy saw
    assert torch.isnan(host).all()
    dev.host_wait(done)
    assert host.tolist() == [0.0, 1.0, 2.0, 3.0] and dev.syncs == 1
    with pytest.raises(DeviceError, match="pageable"):
        dev.copy_to_host_async(x, torch.empty(4))


def test_stream_order_publishes_earlier_copies(dev):
    a, ev_a = dev.copy_to_host_async(dev.to_device(torch.ones(2)))
    b, ev_b = dev.copy_to_host_async(dev.to_device(torch.full((2,), 2.0)))
    dev.host_wait(ev_b)  # completion of b implies a's, on the same stream
    assert a.tolist() == [1.0, 1.0] and b.tolist() == [2.0, 2.0]
    side = dev.side_stream()
    with dev.stream(side):
        c, ev_c = dev.copy_to_device_async(dev.stage(torch.ones(2)))
    _, ev_d = dev.copy_to_device_async(dev.stage(torch.ones(2)))
    dev.wait(ev_d)  # another stream's copy is not implied
    assert torch.isnan(c.inner).all()
    dev.wait(ev_c)
    assert dev.to_host(c).tolist() == [1.0, 1.0]


def test_make_device_names():
    assert isinstance(make_device("cpu"), HostDevice)
    assert make_device("emulated").name == "emulated"
    if not torch.cuda.is_available():
        assert make_device("auto").name == "cpu"


def _mlp_run(device, steps=5):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
    device.place_module(model)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    gen = torch.Generator().manual_seed(1)
    data = [
        (torch.randn(32, 6, generator=gen), torch.rand(32, 1, generator=gen)) for _ in range(steps)
    ]
    torch.manual_seed(2)  # dropout masks
    for x, y in data:
        loss = nn.functional.binary_cross_entropy_with_logits(
            model(device.to_device(x)), device.to_device(y)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: device.to_host(v) for k, v in model.state_dict().items()}, opt


def test_mlp_with_adam_is_bit_identical_to_cpu():
    cpu, _ = _mlp_run(HostDevice())
    emu, _ = _mlp_run(EmulatedDevice())
    for k in cpu:
        assert torch.equal(cpu[k], emu[k]), k


def test_state_loads_into_device_modules_and_optimizers():
    dev = EmulatedDevice()
    state, opt = _mlp_run(dev, steps=2)
    torch.manual_seed(5)
    fresh = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 1))
    dev.place_module(fresh)
    dev.load_state(fresh, state)
    for k, v in fresh.state_dict().items():
        assert torch.equal(dev.to_host(v), state[k]), k
    saved = dev.state_to_host(opt.state_dict())
    new_opt = torch.optim.Adam(fresh.parameters(), lr=0.01)
    dev.load_optimizer(new_opt, saved)
    for entry in new_opt.state.values():
        assert isinstance(entry["exp_avg"], DeviceTensor)  # not a plain meta tensor
        assert not isinstance(entry["step"], DeviceTensor)  # host counter, as torch keeps it
    with pytest.raises(RuntimeError, match="missing keys"):
        dev.load_state(fresh, {})


def cuda_calls_outside_the_device_layer(root) -> list[str]:
    import re

    found = []
    for path in sorted(root.rglob("*.py")):
        if "device" in path.relative_to(root).parts[:1]:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"torch\.cuda\b|\.cuda\(", line.split("#", 1)[0]):
                found.append(f"{path.relative_to(root)}:{n}: {line.strip()}")
    return found


def test_no_cuda_call_outside_the_device_layer():
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src" / "hotrec"
    assert cuda_calls_outside_the_device_layer(src) == []


def test_negative_control_the_cuda_scan_finds_calls(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "x.py").write_text("s = torch.cuda.Stream()\ny = x.cuda()\n")
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "cuda.py").write_text("torch.cuda.synchronize()\n")
    assert len(cuda_calls_outside_the_device_layer(tmp_path)) == 2


def test_staging_buffers_are_reused_once_their_copy_finished(dev):
    a = dev.stage(torch.arange(6.0))
    moved, ready = dev.copy_to_device_async(a)
    b = dev.stage(torch.arange(5.0))  # the first copy may still be in flight: another buffer
    assert b.untyped_storage().data_ptr() != a.untyped_storage().data_ptr()
    dev.copy_to_device_async(b)
    dev.host_wait(ready)
    assert torch.equal(dev.to_host(moved), torch.arange(6.0))
    c = dev.stage(torch.full((3,), 7.0))  # a's copy finished: its buffer again
    assert c.untyped_storage().data_ptr() == a.untyped_storage().data_ptr()
    assert dev.staging_allocations == 2
    for _ in range(50):  # a steady stream of copies waited for: no new allocations
        moved, ready = dev.copy_to_device_async(dev.stage(torch.randn(8)))
        dev.host_wait(ready)
    assert dev.staging_allocations <= 3


def test_a_readback_reuses_its_pinned_destination(dev):
    from hotrec.device import Readback

    back = Readback(dev)
    first, ready = back.copy(dev.to_device(torch.arange(6.0)))
    dev.host_wait(ready)
    assert torch.equal(first, torch.arange(6.0)) and dev.is_pinned(first)
    allocated = dev.staging_allocations
    for n in (5, 8, 3, 8):  # within the first buffer's capacity: the same memory again
        out, ready = back.copy(dev.to_device(torch.full((n,), float(n))))
        dev.host_wait(ready)
        assert torch.equal(out, torch.full((n,), float(n)))
        assert out.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    assert dev.staging_allocations == allocated
    back.copy(dev.to_device(torch.zeros(9)))  # larger: one new buffer
    assert dev.staging_allocations == allocated + 1
