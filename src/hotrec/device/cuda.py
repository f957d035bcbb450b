"""The CUDA device: pinned staging, a side stream, events, and sync counting.

Every synchronization asked for through the device (`host_wait`, `to_host`, `to_device`,
`synchronize`, `elapsed_ms`) is counted in `syncs` / `sync_ops`, as the emulated device
counts them. A synchronization nobody asked for (an `.item()`, a boolean mask, `nonzero` on
device memory) is found by `forbid_hidden_syncs()`: torch's sync debug mode set to "error"
for everything but the device's own counted calls.
"""

from __future__ import annotations

import collections
from contextlib import contextmanager, nullcontext

import torch

from hotrec.device.base import Device, Event, Stream


class CudaEvent(Event):
    def done(self) -> bool:
        return self.native.query()


class CudaDevice(Device):
    name = "cuda"
    counts_syncs = True

    def __init__(self, index: int | None = None) -> None:
        super().__init__()
        self._device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
        self.default_stream = Stream("default", torch.cuda.current_stream(self._device))
        self._strict = False
        self.reset_counters()

    # -- counting ---------------------------------------------------------------------------
    def reset_counters(self) -> None:
        self.syncs = 0
        self.sync_ops: collections.Counter[str] = collections.Counter()

    def _sync(self, op: str):
        """Count one synchronization asked for by name; allowed under forbid_hidden_syncs."""
        self.syncs += 1
        self.sync_ops[op] += 1
        return _debug_mode(0) if self._strict else nullcontext()

    @contextmanager
    def forbid_hidden_syncs(self):
        """Any synchronization not asked for through this device raises inside the block."""
        self._strict = True
        try:
            with _debug_mode(2):  # "error"
                yield
        finally:
            self._strict = False

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def __str__(self) -> str:
        return f"cuda ({torch.cuda.get_device_name(self._device)})"

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        if t.device == self._device:
            return t
        with self._sync("to_device"):  # a blocking copy from pageable memory
            return t.to(self._device)

    def to_host(self, t: torch.Tensor) -> torch.Tensor:
        if t.device.type == "cpu":
            return t
        with self._sync("to_host"):
            return t.cpu()

    def zeros(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(*shape, dtype=dtype, device=self._device)

    def pinned(self, shape, dtype: torch.dtype) -> torch.Tensor:
        self.pinned_allocations += 1
        return torch.empty(shape, dtype=dtype, pin_memory=True)

    def is_pinned(self, t: torch.Tensor) -> bool:
        return t.is_pinned()

    def side_stream(self) -> Stream:
        return Stream("side", torch.cuda.Stream(self._device))

    def stream(self, s: Stream):
        return _CudaStreamContext(self, s)

    def record_event(self) -> Event:
        native = torch.cuda.Event(enable_timing=True)
        native.record(self._current.native)
        return CudaEvent(native)

    def wait(self, event: Event | None) -> None:
        if event is not None and event.native is not None:
            self._current.native.wait_event(event.native)

    def host_wait(self, event: Event | None) -> None:
        if event is not None and event.native is not None:
            with self._sync("host_wait"):
                event.native.synchronize()

    def keep_alive(self, t: torch.Tensor, stream: Stream | None = None) -> None:
        t.record_stream((stream or self._current).native)

    def elapsed_ms(self, start: Event, end: Event) -> float:
        with self._sync("elapsed_ms"):
            end.native.synchronize()
        return start.native.elapsed_time(end.native)

    def synchronize(self) -> None:
        with self._sync("synchronize"):
            torch.cuda.synchronize(self._device)

    def copy_to_device_async(self, src: torch.Tensor) -> tuple[torch.Tensor, Event]:
        if not src.is_pinned():
            raise RuntimeError("an async host-to-device copy needs a pinned source (stage it)")
        out = src.to(self._device, non_blocking=True)
        event = self.record_event()
        self._read_by(src, event)
        return out, event

    def copy_to_host_async(
        self, src: torch.Tensor, dst: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Event]:
        if dst is None:
            dst = self.pinned(src.shape, src.dtype)
        dst.copy_(src, non_blocking=True)
        return dst, self.record_event()

    def memory_free(self) -> int | None:
        free, _ = torch.cuda.mem_get_info(self._device)
        return int(free)

    def native_bf16(self) -> str | None:
        major, minor = torch.cuda.get_device_capability(self._device)
        return f"compute capability {major}.{minor}" if major >= 8 else None


@contextmanager
def _debug_mode(mode: int):
    """torch.cuda's sync debug mode (0 off, 1 warn, 2 error) inside the block."""
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class _CudaStreamContext:
    def __init__(self, device: CudaDevice, s: Stream) -> None:
        self.device, self.s = device, s

    def __enter__(self) -> Stream:
        self.previous, self.device._current = self.device._current, self.s
        self.inner = torch.cuda.stream(self.s.native)
        self.inner.__enter__()
        return self.s

    def __exit__(self, *exc) -> None:
        self.inner.__exit__(*exc)
        self.device._current = self.previous
