"""The CUDA device: pinned staging, a side stream, events, and sync counting in debug mode."""

from __future__ import annotations

import torch

from hotrec.device.base import Device, Event, Stream


class CudaEvent(Event):
    def done(self) -> bool:
        return self.native.query()


class CudaDevice(Device):
    name = "cuda"

    def __init__(self, index: int | None = None) -> None:
        super().__init__()
        self._device = torch.device("cuda", torch.cuda.current_device() if index is None else index)
        self.default_stream = Stream("default", torch.cuda.current_stream(self._device))

    @property
    def torch_device(self) -> torch.device:
        return self._device

    def __str__(self) -> str:
        return f"cuda ({torch.cuda.get_device_name(self._device)})"

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        return t.to(self._device)

    def to_host(self, t: torch.Tensor) -> torch.Tensor:
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
            event.native.synchronize()

    def keep_alive(self, t: torch.Tensor, stream: Stream | None = None) -> None:
        t.record_stream((stream or self._current).native)

    def elapsed_ms(self, start: Event, end: Event) -> float:
        end.native.synchronize()
        return start.native.elapsed_time(end.native)

    def synchronize(self) -> None:
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
