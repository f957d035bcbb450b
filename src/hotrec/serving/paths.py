"""A serving path: one representation on one device, with the batch sizes it accepts.

Paths are named `<representation>@<device>` ("table@cpu", "dhe@cuda"); the static policies
take such a name (`static:table@cpu`).
"""

from __future__ import annotations

from dataclasses import dataclass

from hotrec.errors import HotrecError

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ServingPath:
    representation: str  # name of the representation in the artifact
    device: str  # cpu | cuda
    max_batch: int = 4096  # most items run in one forward pass
    min_batch: int = 1  # fewest items worth a forward pass

    @property
    def name(self) -> str:
        return f"{self.representation}@{self.device}"

    def __str__(self) -> str:
        return self.name


def parse_path(text: str, max_batch: int = 4096) -> ServingPath:
    """'table@cpu' -> ServingPath('table', 'cpu'); a bare 'table' means the cpu."""
    rep, _, device = text.strip().partition("@")
    device = device or "cpu"
    if not rep or device not in DEVICES:
        raise HotrecError(f"a path is REPRESENTATION@DEVICE with device cpu or cuda, got {text!r}")
    return ServingPath(rep, device, max_batch)


def available_devices() -> list[str]:
    """cpu, plus cuda when a CUDA device is present."""
    from hotrec.device import cuda_available

    return ["cpu", "cuda"] if cuda_available() else ["cpu"]


def resolve_devices(text: str) -> list[str]:
    """'auto' -> every available device; 'cpu,cuda' -> checked list."""
    present = available_devices()
    if text == "auto":
        return present
    names = [d.strip() for d in text.split(",") if d.strip()]
    for d in names:
        if d not in DEVICES:
            raise HotrecError(f"unknown device {d!r}: use auto or a list of cpu, cuda")
        if d not in present:
            raise HotrecError(f"device {d} asked for, but it is not available here")
    if not names:
        raise HotrecError("no device given: use auto or a list of cpu, cuda")
    return list(dict.fromkeys(names))


def all_paths(representations: list[str], devices: list[str], max_batch: int) -> list[ServingPath]:
    """Every (representation, device) pair, representations first."""
    return [ServingPath(r, d, max_batch) for r in representations for d in devices]
