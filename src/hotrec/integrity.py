"""Files from elsewhere are data, never code: safe tensor loading and checksums.

Every tensor file is read with ``torch.load(weights_only=True)``, which unpickles only
tensors and plain containers, so a crafted file cannot run code; anything else is refused
with one line naming the file. Checksums (BLAKE2b) catch what a zip or .npy header does not:
a flipped bit inside tensor or array data.

- ``structure_digest(obj)``: a digest over a nested dict/list of tensors and JSON values,
  stored inside a checkpoint beside what it covers and checked when it is loaded.
- ``write_checksums(dir, files)`` / ``verify_checksums(dir)``: a ``checksums.json`` of
  per-file digests, written when a dataset or an artifact is made.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hotrec.errors import HotrecError
from hotrec.fileio import read_json_object, write_json_atomic

if TYPE_CHECKING:  # torch is imported where tensors are handled: data preparation does not pay it
    import torch

CHECKSUMS = "checksums.json"
ALGORITHM = "blake2b"
_CHUNK = 1 << 22


def load_tensors(path: Path, what: str = "file"):
    """``torch.load`` that never executes code from the file; one-line errors naming it."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise HotrecError(f"no {what} at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HotrecError(
            f"{path} holds more than tensors and plain values; refused, nothing from it was "
            f"run ({first[:160]})"
        ) from None
    except Exception as e:  # a truncated or damaged zip
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise HotrecError(f"{path} is not a readable {what} (damaged?): {first[:200]}") from None


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    import torch

    flat = t.detach().cpu().contiguous().reshape(-1)
    if flat.numel() == 0:
        return memoryview(b"")
    return memoryview(flat.view(torch.uint8).numpy())


def _feed(h, obj, path: str) -> None:
    h.update(path.encode())
    if _is_tensor(obj):
        h.update(f"T{obj.dtype}{tuple(obj.shape)}".encode())
        h.update(_tensor_bytes(obj))
    elif isinstance(obj, dict):
        h.update(b"D%d" % len(obj))
        for key in sorted(obj, key=repr):
            _feed(h, obj[key], f"{path}/{key!r}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"L%d" % len(obj))
        for i, item in enumerate(obj):
            _feed(h, item, f"{path}[{i}]")
    else:
        h.update(f"V{type(obj).__name__}:{obj!r}".encode())


def _is_tensor(obj) -> bool:
    import torch

    return isinstance(obj, torch.Tensor)


def structure_digest(obj) -> str:
    """BLAKE2b over every key, value and tensor byte of a nested structure."""
    import hashlib  # OpenSSL's loader costs milliseconds: only when hashing

    h = hashlib.blake2b(digest_size=20)
    _feed(h, obj, "")
    return h.hexdigest()


def file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def write_checksums(root: Path, files: Iterable[str]) -> None:
    """``root/checksums.json``: the digest of each file (paths relative to root)."""
    root = Path(root)
    digests = {name: file_digest(root / name) for name in sorted(files)}
    write_json_atomic(root / CHECKSUMS, {"algorithm": ALGORITHM, "files": digests})


def read_checksums(root: Path) -> dict[str, str] | None:
    """The recorded digests, or None when the directory has no checksums.json."""
    file = Path(root) / CHECKSUMS
    if not file.is_file():
        return None
    body = read_json_object(file)
    try:
        files = body["files"]
        if body.get("algorithm") != ALGORITHM or not isinstance(files, dict):
            raise ValueError("unknown layout")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
            raise ValueError("non-string entries")
    except (ValueError, KeyError, TypeError) as e:
        raise HotrecError(f"{file} is damaged: {e}") from None
    return files


def verify_file(root: Path, name: str, recorded: dict[str, str] | None) -> None:
    """Check one file against the recorded digests (nothing to check without a record)."""
    if recorded is None:
        return
    if name not in recorded:
        raise HotrecError(f"{Path(root) / name} is not listed in {Path(root) / CHECKSUMS}")
    if file_digest(Path(root) / name) != recorded[name]:
        raise HotrecError(
            f"{Path(root) / name} does not match its checksum in {CHECKSUMS}: the file is "
            "corrupt or was changed"
        )


def verify_checksums(root: Path, progress=None, missing_ok: bool = False) -> list[str]:
    """Check every recorded file; returns the names checked. Raises on the first mismatch,
    and on a missing file unless missing_ok (the reader then says what the file was for)."""
    root = Path(root)
    recorded = read_checksums(root)
    if recorded is None:
        raise HotrecError(f"{root} has no {CHECKSUMS}: nothing to verify against")
    for name in recorded:
        if not (root / name).is_file():
            if missing_ok:
                continue
            raise HotrecError(f"{root / name} is listed in {CHECKSUMS} but missing")
        verify_file(root, name, recorded)
        if progress is not None:
            progress(name)
    return list(recorded)


def non_finite_entry(obj, path: str = "") -> str | None:
    """The key path of the first floating-point tensor in a nested structure that holds a NaN
    or an infinity, or None when every value is finite."""
    import torch

    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() and obj.numel() and not bool(torch.isfinite(obj).all()):
            return path or "tensor"
        return None
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, (list, tuple)):
        items = enumerate(obj)
    else:
        return None
    for key, value in items:
        found = non_finite_entry(value, f"{path}/{key}" if path else str(key))
        if found:
            return found
    return None
