"""The device layer: the one place where tensors move between host and device memory.

Training code never calls `torch.cuda` or `.to(device)` itself; it asks a `Device`:

- `to_device(t)` / `to_host(t)`: blocking copies (set-up, checkpoints, evaluation);
- `pinned(shape, dtype)` / `stage(t)`: page-locked host buffers, the only legal source of an
  asynchronous host-to-device copy and destination of an asynchronous device-to-host one;
- `copy_to_device_async(src)` -> (device tensor, Event) and
  `copy_to_host_async(src, dst)` -> Event, on the current stream (or a side stream entered
  with `with device.stream(device.side_stream()):`);
- `wait(event)`: the current stream waits for the event (no host block); `host_wait(event)`:
  the host blocks until it completed (a synchronization);
- `Readback(device)`: one call site's reused pinned destination of asynchronous
  device-to-host copies (`readback.copy(src)` -> (host tensor, Event));
- `keep_alive(t, stream)`: a tensor allocated on one stream is used on another;
- `record_event()` / `elapsed_ms(a, b)`: timing events, read once per log interval;
- `synchronize()`, `syncs` (device-to-host synchronizations counted so far, where the device
  can count them).

Three implementations: `HostDevice` (the CPU: device memory is host memory, every copy is a
no-op and every event is complete), `CudaDevice` and `EmulatedDevice` (the CPU with
everything CUDA enforces made strict, for CI).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils._pytree import tree_map

_TAKEN = object()  # a staging buffer handed out whose copy is not recorded yet


class Stream:
    """A queue of device work; the default stream is `Device.default_stream`."""

    def __init__(self, name: str, native=None) -> None:
        self.name, self.native = name, native

    def __repr__(self) -> str:
        return f"Stream({self.name})"


class Event:
    """A point in a stream's work. `done()` says whether it completed (never blocks)."""

    def __init__(self, native=None, host_time: float | None = None) -> None:
        self.native = native
        self.host_time = time.perf_counter() if host_time is None else host_time

    def done(self) -> bool:
        return True


class Readback:
    """A reused pinned destination for one call site's asynchronous device-to-host copies.

    Its owner has finished reading the previous result before it starts the next copy (a
    training step applies its gradients before the next step copies any back), so one
    buffer, grown to the largest size seen (in powers of 2), serves every step: page-locked
    allocations are slow, and a fresh one per step would cost more than the copy."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.buffer: torch.Tensor | None = None

    def copy(self, src: torch.Tensor) -> tuple[torch.Tensor, Event]:
        """Start copying device `src` into the buffer; read it after `host_wait(event)`."""
        dev = self.device
        if dev.is_host or not dev.is_device_tensor(src):
            return src, Event()
        buf = self.buffer
        if buf is None or buf.dtype != src.dtype or buf.numel() < src.numel():
            with torch.inference_mode(False):
                size = 1 << max(src.numel() - 1, 0).bit_length()
                buf = self.buffer = dev.pinned((max(1, size),), src.dtype)
            dev.staging_allocations += 1
        return dev.copy_to_host_async(src, buf[: src.numel()].view(src.shape))


class Device:
    """Interface of a training device; see the module docstring."""

    name = "device"
    is_host = False  # True when device memory is host memory (no copies happen)
    counts_syncs = False  # True when `syncs` counts device-to-host synchronizations

    def __init__(self) -> None:
        self.default_stream = Stream("default")
        self._local = threading.local()  # the current stream is per thread, as in CUDA
        self._pool: list[list] = []  # [pinned staging buffer, event of its last reader]
        self._pool_lock = threading.Lock()
        self.staging_allocations = 0  # pooled staging and readback buffers allocated so far
        self.pinned_allocations = 0  # page-locked allocations of any kind (where counted)
        self.syncs = 0  # device-to-host synchronizations seen (where counted)
        self.scalars = Readback(self)  # the loss read of every step

    # -- placement --------------------------------------------------------------------------
    @property
    def torch_device(self) -> torch.device:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.name

    def place_module(self, module: nn.Module) -> nn.Module:
        """Parameters and buffers of `module` to device memory (in place)."""
        return module._apply(self.to_device)

    def is_device_tensor(self, t: torch.Tensor) -> bool:
        return t.device == self.torch_device

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A blocking copy to device memory (returns `t` when it is there already)."""
        raise NotImplementedError

    def to_host(self, t: torch.Tensor) -> torch.Tensor:
        """A blocking copy to host memory: a synchronization when `t` is on the device."""
        raise NotImplementedError

    def zeros(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return self.to_device(torch.zeros(*shape, dtype=dtype))

    def state_to_host(self, obj):
        """A nested state (state_dict, optimizer state) with every tensor copied to host."""
        return tree_map(lambda x: self.to_host(x) if isinstance(x, torch.Tensor) else x, obj)

    def load_state(self, module: nn.Module, state: dict) -> None:
        """`module.load_state_dict(state)` (strict) for a module placed on this device."""
        module.load_state_dict(state)

    def load_optimizer(self, opt: torch.optim.Optimizer, state: dict) -> None:
        """`opt.load_state_dict(state)` for an optimizer over this device's parameters."""
        opt.load_state_dict(state)

    # -- pinned staging ---------------------------------------------------------------------
    def pinned(self, shape, dtype: torch.dtype) -> torch.Tensor:
        """An empty page-locked host buffer."""
        return torch.empty(shape, dtype=dtype)

    def is_pinned(self, t: torch.Tensor) -> bool:
        return True

    def stage(self, t: torch.Tensor) -> torch.Tensor:
        """`t` in pinned host memory: a copy into a reused staging buffer (unless `t` is
        pinned already). A buffer is reused once the async copy that last read it finished,
        so staging allocates only while earlier copies are still in flight."""
        if self.is_pinned(t):
            return t
        out = self._staging_buffer(t.numel(), t.dtype).view(t.shape)
        out.copy_(t)
        return out

    def _staging_buffer(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """The first `numel` elements of a free pooled buffer (capacities are powers of 2)."""
        with self._pool_lock:
            for entry in self._pool:
                buf, event = entry
                free = event is not _TAKEN and (event is None or event.done())
                if free and buf.dtype == dtype and buf.numel() >= numel:
                    entry[1] = _TAKEN  # until the copy that reads it is recorded
                    return buf[:numel]
            with torch.inference_mode(False):  # reused later outside inference mode too
                buf = self.pinned((max(1, 1 << max(numel - 1, 0).bit_length()),), dtype)
            self._pool.append([buf, _TAKEN])
            self.staging_allocations += 1
            return buf[:numel]

    def _read_by(self, src: torch.Tensor, event: Event) -> None:
        """An async copy reads `src`: its staging buffer is free again when `event` is."""
        ptr = src.untyped_storage().data_ptr()
        with self._pool_lock:
            for entry in self._pool:
                if entry[0].untyped_storage().data_ptr() == ptr:
                    entry[1] = event
                    return

    def upload(self, t: torch.Tensor) -> torch.Tensor:
        """Host `t` in device memory without a host wait: staged in a pooled pinned buffer,
        copied asynchronously, and the current stream waits for the copy (returns `t` when
        device memory is host memory). The per-step way in; `to_device` is for set-up."""
        if self.is_host or self.is_device_tensor(t):
            return t
        moved, ready = self.copy_to_device_async(self.stage(t))
        self.wait(ready)
        return moved

    def beside(self, index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Host `index` in the memory `t` lives in: uploaded when `t` is in device memory."""
        if self.is_host or not self.is_device_tensor(t):
            return index
        return self.upload(index)

    # -- streams and events -----------------------------------------------------------------
    def side_stream(self) -> Stream:
        return Stream("side")

    @contextmanager
    def stream(self, s: Stream):
        previous, self._current = self._current, s
        try:
            yield s
        finally:
            self._current = previous

    @property
    def _current(self) -> Stream:
        return getattr(self._local, "stream", None) or self.default_stream

    @_current.setter
    def _current(self, s: Stream) -> None:
        self._local.stream = s

    @property
    def current_stream(self) -> Stream:
        return self._current

    def record_event(self) -> Event:
        return Event()

    def wait(self, event: Event | None) -> None:
        """The current stream waits for `event` (the host does not block)."""

    def host_wait(self, event: Event | None) -> None:
        """The host blocks until `event` completed."""

    def keep_alive(self, t: torch.Tensor, stream: Stream | None = None) -> None:
        """`t`, allocated on another stream, is used on `stream` (default: the current one)."""

    def elapsed_ms(self, start: Event, end: Event) -> float:
        return (end.host_time - start.host_time) * 1e3

    def synchronize(self) -> None:
        """The host waits for all device work."""

    # -- async copies -----------------------------------------------------------------------
    def copy_to_device_async(self, src: torch.Tensor) -> tuple[torch.Tensor, Event]:
        """Start copying pinned host `src` to a new device tensor on the current stream; use
        the tensor only on a stream that waited for the event. `src` must not change until
        the event completed."""
        raise NotImplementedError

    def copy_to_host_async(
        self, src: torch.Tensor, dst: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Event]:
        """Start copying device `src` into pinned host memory (`dst`, or a new buffer) on the
        current stream; read the result only after `host_wait` on the returned event. The
        copy sees `src` as it is at this point of the stream."""
        raise NotImplementedError

    # -- misc -------------------------------------------------------------------------------
    def memory_free(self) -> int | None:
        """Free device memory in bytes, or None when it is host memory."""
        return None

    def autocast_type(self) -> str:
        """The device type torch.autocast takes for this device."""
        return self.torch_device.type

    def native_bf16(self) -> str | None:
        """What makes this device compute bf16 natively (`--precision auto` picks bf16 then),
        or None."""
        return None

    def reset_counters(self) -> None:
        self.syncs = 0

    def forbid_hidden_syncs(self):
        """A context in which a synchronization not asked for through the device raises
        (CUDA: torch's sync debug mode); a no-op where every sync is counted or none exists."""
        return contextlib.nullcontext()


class HostDevice(Device):
    """The CPU: device memory is host memory; copies return their input, events are done."""

    name = "cpu"
    is_host = True

    @property
    def torch_device(self) -> torch.device:
        return torch.device("cpu")

    def native_bf16(self) -> str | None:
        flags = cpu_flags()
        for flag in BF16_FLAGS:
            if flag in flags:
                return f"this CPU has {flag}"
        return None

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def to_host(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def zeros(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.zeros(*shape, dtype=dtype)

    def copy_to_device_async(self, src: torch.Tensor) -> tuple[torch.Tensor, Event]:
        return src, Event()

    def copy_to_host_async(
        self, src: torch.Tensor, dst: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Event]:
        if dst is None:
            return src, Event()
        dst.copy_(src)
        return dst, Event()


BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # CPU features that compute bf16 matmuls natively


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where there is no such file)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()
