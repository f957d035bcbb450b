"""Host/device memory movement for training: `make_device("auto" | "cpu" | "cuda" | "emulated")`."""

from __future__ import annotations

import os

import torch

from hotrec.device.base import Device, Event, HostDevice, Readback, Stream
from hotrec.errors import HotrecError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "emulated")

__all__ = [
    "DEVICE_CHOICES",
    "Device",
    "Event",
    "HostDevice",
    "Readback",
    "Stream",
    "as_device",
    "cuda_available",
    "current_gpu",
    "make_device",
    "set_deterministic",
    "use_gpu",
]


def make_device(name: str) -> Device:
    """The device layer for `name`; auto is cuda when a GPU is present, else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return HostDevice()
    if name == "cuda":
        if not torch.cuda.is_available():
            raise HotrecError("--device cuda asked for, but no CUDA device is available")
        from hotrec.device.cuda import CudaDevice

        return CudaDevice()
    if name == "emulated":
        from hotrec.device.emulated import EmulatedDevice

        return EmulatedDevice()
    raise HotrecError(f"unknown device {name!r}: use {', '.join(DEVICE_CHOICES)}")


def cuda_available() -> bool:
    """Whether a CUDA device can be used (the one place outside device/ asks through)."""
    return torch.cuda.is_available()


def use_gpu(index: int) -> None:
    """Make GPU `index` this process's CUDA device (a rank of a distributed run: its local
    rank), before any CUDA memory is allocated."""
    torch.cuda.set_device(index)


def current_gpu() -> int:
    """The index of this process's CUDA device."""
    return torch.cuda.current_device()


def as_device(device: Device | torch.device | str) -> Device:
    """A Device for `device` (a Device is returned as it is; "cpu" / "cuda:N" are wrapped)."""
    if isinstance(device, Device):
        return device
    device = torch.device(device)
    if device.type == "cpu":
        return HostDevice()
    if device.type == "cuda":
        from hotrec.device.cuda import CudaDevice

        return CudaDevice(device.index)
    raise HotrecError(f"unknown device {device}: use {', '.join(DEVICE_CHOICES)}")


def set_deterministic() -> None:
    """Deterministic kernels everywhere (train.deterministic): torch's deterministic
    algorithms, and the cuBLAS workspace setting they need on CUDA. Process-wide, as torch's
    setting is; a nondeterministic op then raises instead of running."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
