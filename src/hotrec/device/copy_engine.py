"""The emulated device's copy engine: asynchronous copies that complete late, on a thread.

Each copy runs after latency + bytes / bandwidth. Its data reaches the destination only when
a consumer waits on its event, or on a later event of the same stream (stream order), so code
that forgets the wait reads the poison value (NaN, or the dtype's maximum) every time, not
only when it loses a race as on CUDA.
"""

from __future__ import annotations

import queue
import threading
import time

import torch

from hotrec.device.base import Event, Stream


class DeviceError(RuntimeError):
    """Code that would fail, or silently misbehave, on a CUDA device."""


def poison(shape, dtype: torch.dtype) -> torch.Tensor:
    """What memory holds before a copy into it ran: NaN, or the dtype's max (True for bool)."""
    if dtype == torch.bool:
        return torch.ones(shape, dtype=dtype)
    if dtype.is_floating_point or dtype.is_complex:
        return torch.full(shape, float("nan"), dtype=dtype)
    return torch.full(shape, torch.iinfo(dtype).max, dtype=dtype)


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equality (NaN equals NaN)."""
    a, b = a.contiguous().reshape(-1), b.contiguous().reshape(-1)
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


class EmulatedEvent(Event):
    """An event that completes when the copy engine ran its copy; may carry a DeviceError."""

    def __init__(self, complete: bool = False) -> None:
        super().__init__()
        self.flag = threading.Event()
        self.error: DeviceError | None = None
        self.publish = None  # writes the copied data into the destination
        self.stream: Stream | None = None
        if complete:
            self.flag.set()

    def done(self) -> bool:
        return self.flag.is_set()


class CopyEngine:
    """One background thread running queued copies in order, each after its delay."""

    def __init__(self, bandwidth: float, latency_s: float) -> None:
        self.bandwidth, self.latency_s = bandwidth, latency_s  # bytes per second, seconds
        self._lock = threading.Lock()
        self._unpublished: dict[Stream, list[EmulatedEvent]] = {}  # per stream, in order
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def enqueue(self, run, nbytes: int, stream: Stream) -> EmulatedEvent:
        """Queue `run(event)` (it checks the copy and sets `event.publish`) on `stream`."""
        event = EmulatedEvent()
        event.stream = stream
        with self._lock:
            self._unpublished.setdefault(stream, []).append(event)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="hotrec-emulated-copy-engine", daemon=True
                )
                self._thread.start()
        self._jobs.put((run, event, self.latency_s + nbytes / self.bandwidth))
        return event

    def publish_until(self, event: EmulatedEvent) -> None:
        """Wait for `event` and publish it and every earlier copy of its stream."""
        event.flag.wait()
        if event.error is not None:
            raise event.error
        with self._lock:
            pending = self._unpublished.get(event.stream, [])
            n = pending.index(event) + 1 if event in pending else 0
            ready, pending[:n] = pending[:n], []
        for e in ready:
            e.flag.wait()
            if e.error is not None:
                raise e.error
            if e.publish is not None:
                e.publish()
                e.publish = None

    def join(self) -> None:
        """Until every queued copy ran."""
        self._jobs.join()

    def _work(self) -> None:
        while True:
            run, event, delay = self._jobs.get()
            try:
                time.sleep(delay)
                run(event)
            except Exception as exc:  # a failed copy fails its event, not the engine
                event.error = DeviceError(f"async copy failed: {exc}")
            finally:
                event.flag.set()
                self._jobs.task_done()
