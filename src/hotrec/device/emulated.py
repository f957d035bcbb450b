"""The emulated device: the CPU with everything CUDA enforces made strict, for CI without a GPU.

Device memory is a tensor subclass, `DeviceTensor`, that reports the device `meta` and holds a
plain CPU tensor (`inner`). Every aten op on it runs through `__torch_dispatch__`, which runs
the op on the inner tensors (the same CPU kernels and the same `torch.manual_seed` stream as
plain CPU training, so results are bit-identical) and checks, each violation raising a
`DeviceError` that names the op:

- mixing: a device tensor and a host tensor of dim > 0 in one op (0-dim host tensors pass, as
  CUDA takes CPU scalars); only `copy_` and `.to()` cross, and they are counted. A plain meta
  tensor (`torch.zeros(..., device=x.device)`) is refused: create device tensors through the
  Device or `x.new_*` / `torch.*_like(x)`;
- synchronizations: every device-to-host read (`.item()`, `bool()`, `nonzero`, boolean-mask
  indexing, `unique`, `repeat_interleave` without `output_size`, `.cpu()`, `to_host`...) and
  every blocking host-to-device copy adds one to `syncs`, by op name in `sync_ops` (blocking
  host-to-device copies also in `blocking_h2d`), as CUDA's sync debug mode would flag them;
- async copies: only from and into `pinned` buffers; a background "copy engine" thread makes
  each one late (latency + bytes / bandwidth; HOTREC_EMULATED_BANDWIDTH sets the default
  bandwidth); the destination reads NaN (or the dtype's max) until a consumer waited on the
  copy's event (`wait` / `host_wait`): code that forgets the wait reads NaN every time, not
  only when it loses a race; a pinned source written before the copy ran makes the event fail
  at `wait` / `host_wait`.

Limitations: transfers are not differentiable (`to_device` makes a leaf, `to_host` detaches);
`module.load_state_dict` into device parameters is a silent no-op in torch (they report
`meta`), so load through `EmulatedDevice.load_into`; `torch.save` of device tensors is not
supported (convert with `to_host` first); `torch.autocast("meta")` raises in torch, so code
must take its autocast device type from `Device.autocast_type()` (here "cpu", never enabled).
"""

from __future__ import annotations

import collections
import os
import threading
import weakref

import torch
from torch import nn

from hotrec.device.base import Device, Event, Stream
from hotrec.device.copy_engine import (  # noqa: F401 (DeviceError: part of this module's API)
    CopyEngine,
    DeviceError,
    EmulatedEvent,
    poison,
    same_bytes,
)
from hotrec.device.walk import map_tensors, tensors_in

aten = torch.ops.aten
_META = torch.device("meta")
_CPU = torch.device("cpu")

# Ops that read device memory on the host whatever their arguments.
_SYNC_OPS = {
    aten._local_scalar_dense,
    aten.is_nonzero,
    aten.equal,
    aten.nonzero,
    aten.masked_select,
    aten.bincount,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.unique_dim_consecutive,
}
# Ops that sync only when one of their indices is a mask (its count of True sizes the result).
_MASK_INDEX_OPS = {aten.index, aten.index_put, aten.index_put_, aten._index_put_impl_}


class DeviceTensor(torch.Tensor):
    """A tensor in emulated device memory: reports device `meta`, holds a CPU tensor `inner`."""

    inner: torch.Tensor
    emulator: EmulatedDevice

    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def __new__(cls, inner: torch.Tensor, emulator: EmulatedDevice, requires_grad: bool = False):
        out = torch.Tensor._make_wrapper_subclass(
            cls,
            inner.shape,
            strides=inner.stride(),
            storage_offset=inner.storage_offset(),
            dtype=inner.dtype,
            device=_META,
            requires_grad=requires_grad,
        )
        out.inner, out.emulator = inner, emulator
        return out

    def __repr__(self) -> str:  # shows the values without counting a sync: debugging only
        return f"DeviceTensor({self.inner!r})"

    # Makes it a traceable wrapper subclass, so `Module._apply` swaps parameters in place
    # (`.to(dtype)` after placement keeps `inner` in step with the wrapper).
    def __tensor_flatten__(self):
        return ["inner"], self.emulator

    @staticmethod
    def __tensor_unflatten__(inner_tensors, emulator, outer_size, outer_stride):
        return DeviceTensor(inner_tensors["inner"], emulator)

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        leaves: list[torch.Tensor] = []
        tensors_in((args, kwargs), leaves)
        wrappers = {id(x.inner): x for x in leaves if isinstance(x, DeviceTensor)}
        emulators = {id(x.emulator): x.emulator for x in wrappers.values()}
        if len(emulators) != 1:
            raise DeviceError(f"{func}: tensors of two emulated devices in one op")
        dev = next(iter(emulators.values()))
        dev._check_args(func, leaves)
        unwrapped_args, unwrapped_kwargs = map_tensors(_unwrap, (args, kwargs))
        host_out = dev._sync_kind(func, args, kwargs)
        if unwrapped_kwargs.get("device") in (_META, "meta"):  # factories like new_zeros
            unwrapped_kwargs["device"] = _CPU
        out = func(*unwrapped_args, **unwrapped_kwargs)
        if host_out:
            return out

        def wrap(x):
            if not isinstance(x, torch.Tensor):
                return x
            known = wrappers.get(id(x))  # in-place / out=: the input wrapper itself
            return known if known is not None else DeviceTensor(x, dev)

        return map_tensors(wrap, out)


def _unwrap(x):
    return x.inner if isinstance(x, DeviceTensor) else x


class EmulatedDevice(Device):
    """The CPU made as strict as CUDA; see the module docstring."""

    name = "emulated"
    is_host = False
    counts_syncs = True

    def __init__(self, bandwidth: float | None = None, latency_s: float = 20e-6) -> None:
        super().__init__()
        env = os.environ.get("HOTREC_EMULATED_BANDWIDTH")
        self.bandwidth = bandwidth or (float(env) if env else 12e9)  # bytes per second
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._pinned: dict[int, weakref.ref] = {}
        self._engine = CopyEngine(self.bandwidth, latency_s)
        self.reset_counters()

    @property
    def torch_device(self) -> torch.device:
        return _META

    def __str__(self) -> str:
        return "emulated (cpu, strict)"

    def autocast_type(self) -> str:
        return "cpu"

    def native_bf16(self) -> str | None:
        return None  # CPU autocast skips device tensors: bf16 is not emulated

    # -- counting ---------------------------------------------------------------------------
    def reset_counters(self) -> None:
        with self._lock:
            self.syncs = 0
            self.blocking_h2d = 0
            self.keep_alives = 0
            self.sync_ops: collections.Counter[str] = collections.Counter()

    def count_sync(self, op: str, blocking_h2d: bool = False) -> None:
        with self._lock:
            self.syncs += 1
            self.sync_ops[op] += 1
            if blocking_h2d:
                self.blocking_h2d += 1

    def _check_args(self, func, leaves: list[torch.Tensor]) -> None:
        crossing = func.overloadpacket in (aten.copy_, aten._to_copy)
        for x in leaves:
            if isinstance(x, DeviceTensor):
                continue
            if x.device.type == "meta":
                raise DeviceError(
                    f"{func}: a meta tensor that is not device memory (made with "
                    "device=x.device?); create device tensors through the Device or x.new_*"
                )
            if x.dim() > 0 and not crossing:
                raise DeviceError(
                    f"{func}: a host tensor of shape {tuple(x.shape)} mixed with device "
                    "tensors; move it with the Device first"
                )

    def _sync_kind(self, func, args, kwargs) -> bool:
        """Counts what `func` synchronizes; True when its result is host memory."""
        packet, name = func.overloadpacket, str(func)
        if packet is aten._to_copy:
            if torch.device(kwargs.get("device") or _META).type == "cpu":
                self.count_sync(name)
                return True
            return False
        if packet is aten.copy_:
            dst, src = args[0], args[1]
            non_blocking = kwargs.get("non_blocking", args[2] if len(args) > 2 else False)
            if not isinstance(dst, DeviceTensor):
                self.count_sync(name)
                return True
            if not isinstance(src, DeviceTensor) and src.dim() > 0:
                if not (non_blocking and self.is_pinned(src)):
                    self.count_sync(name, blocking_h2d=True)
            return False
        if packet in _SYNC_OPS:
            self.count_sync(name)
        elif packet in _MASK_INDEX_OPS:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
                self.count_sync(name)
        elif packet is aten.repeat_interleave and func is aten.repeat_interleave.Tensor:
            if kwargs.get("output_size") is None:
                self.count_sync(name)
        return False

    # -- placement --------------------------------------------------------------------------
    def is_device_tensor(self, t: torch.Tensor) -> bool:
        return isinstance(t, DeviceTensor)

    def to_device(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, DeviceTensor):
            return t
        if t.device.type != "cpu":
            raise DeviceError(f"to_device: a {t.device.type} tensor is not host memory")
        self.count_sync("to_device", blocking_h2d=True)
        return DeviceTensor(t.detach().clone(), self, requires_grad=t.requires_grad)

    def to_host(self, t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, DeviceTensor):
            return t
        self.count_sync("to_host")
        return t.inner.detach().clone()

    def zeros(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return DeviceTensor(torch.zeros(*shape, dtype=dtype), self)

    def load_into(self, module: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
        """`module.load_state_dict(state_dict, strict=True)` for a module on this device."""
        targets = module.state_dict(keep_vars=True)
        missing = sorted(set(targets) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(targets))
        if missing or unexpected:
            raise RuntimeError(f"load_into: missing keys {missing}, unexpected keys {unexpected}")
        with torch.no_grad():
            for key, target in targets.items():
                source = self.to_host(state_dict[key])
                if target.shape != source.shape:
                    raise RuntimeError(
                        f"load_into: {key} has shape {tuple(source.shape)}, "
                        f"the module's {tuple(target.shape)}"
                    )
                _unwrap(target).copy_(source)

    def load_state(self, module: nn.Module, state: dict) -> None:
        self.load_into(module, state)

    def load_optimizer(self, opt: torch.optim.Optimizer, state: dict) -> None:
        """torch moves loaded state with `.to(param.device)`, which would make plain meta
        tensors here: per-parameter state (not the host `step` counters) goes to device
        memory first."""
        fixed = dict(state)
        fixed["state"] = {
            key: {
                name: self.to_device(v) if isinstance(v, torch.Tensor) and name != "step" else v
                for name, v in entry.items()
            }
            for key, entry in state["state"].items()
        }
        opt.load_state_dict(fixed)

    # -- pinned staging ---------------------------------------------------------------------
    def pinned(self, shape, dtype: torch.dtype) -> torch.Tensor:
        t = torch.empty(shape, dtype=dtype)
        self.pinned_allocations += 1
        storage = t.untyped_storage()  # one Python object per storage, alive while it is
        ptr = storage.data_ptr()

        def forget(ref, ptr=ptr):
            with self._lock:
                if self._pinned.get(ptr) is ref:
                    del self._pinned[ptr]

        with self._lock:
            self._pinned[ptr] = weakref.ref(storage, forget)
        return t

    def is_pinned(self, t: torch.Tensor) -> bool:
        if isinstance(t, DeviceTensor) or t.device.type != "cpu":
            return False
        storage = t.untyped_storage()
        with self._lock:
            ref = self._pinned.get(storage.data_ptr())
        return ref is not None and ref() is storage

    # -- streams and events -----------------------------------------------------------------
    def side_stream(self) -> Stream:
        return Stream("side")

    def keep_alive(self, t: torch.Tensor, stream: Stream | None = None) -> None:
        with self._lock:
            self.keep_alives += 1

    def record_event(self) -> Event:
        return EmulatedEvent(complete=True)

    def wait(self, event: Event | None) -> None:
        if isinstance(event, EmulatedEvent):
            self._engine.publish_until(event)

    def host_wait(self, event: Event | None) -> None:
        if event is not None:
            self.count_sync("host_wait")
        self.wait(event)

    def elapsed_ms(self, start: Event, end: Event) -> float:  # read after synchronize()
        return (end.host_time - start.host_time) * 1e3

    def synchronize(self) -> None:
        self.count_sync("synchronize")
        self._engine.join()

    # -- async copies -----------------------------------------------------------------------
    def copy_to_device_async(self, src: torch.Tensor) -> tuple[torch.Tensor, Event]:
        if not self.is_pinned(src):
            raise DeviceError(
                "copy_to_device_async: async copy from pageable memory: "
                "CUDA would stage it synchronously (allocate the source with pinned/stage)"
            )
        dst = DeviceTensor(poison(src.shape, src.dtype), self)
        snapshot = src.clone()

        def run(event: EmulatedEvent) -> None:
            if not same_bytes(src, snapshot):
                event.error = DeviceError(
                    "copy_to_device_async: source of an async copy changed before the copy "
                    "ran (host write-after-read hazard)"
                )
            else:
                copied = src.clone()
                event.publish = lambda: dst.inner.copy_(copied)

        event = self._enqueue(run, src.numel() * src.element_size())
        self._read_by(src, event)
        return dst, event

    def copy_to_host_async(
        self, src: torch.Tensor, dst: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Event]:
        if not isinstance(src, DeviceTensor):
            raise DeviceError("copy_to_host_async: the source is not device memory")
        if dst is None:
            dst = self.pinned(src.shape, src.dtype)
        elif not self.is_pinned(dst):
            raise DeviceError(
                "copy_to_host_async: async copy into pageable memory: CUDA would copy "
                "synchronously (allocate the destination with pinned)"
            )
        if dst.shape != src.shape:
            raise DeviceError(
                f"copy_to_host_async: destination shape {tuple(dst.shape)} "
                f"!= source shape {tuple(src.shape)}"
            )
        snapshot = src.inner.clone()  # stream order: the copy sees src as it is now
        dst.copy_(poison(dst.shape, dst.dtype))

        def run(event: EmulatedEvent) -> None:
            event.publish = lambda: dst.copy_(snapshot)

        return dst, self._enqueue(run, snapshot.nbytes)

    def _enqueue(self, run, nbytes: int) -> EmulatedEvent:
        return self._engine.enqueue(run, nbytes, self.current_stream)
