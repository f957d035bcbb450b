"""Generic file I/O below every layer: atomic writes, JSON objects, JSON lines.

An atomic write goes to a hidden temporary file beside the target, is flushed to disk, and
is renamed over the target last, so a reader sees the old complete file or the new one,
never a part. Readers give one-line errors naming the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hotrec.errors import HotrecError


def temp_path(path: Path) -> Path:
    """The hidden temporary name a write to `path` goes through."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator:
    """Open a temporary file for writing; on a clean exit it is fsynced and renamed to
    `path`; on an exception it is removed and `path` is left as it was. A failed write (disk
    full, no permission, a read-only filesystem) is one line naming `path`."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise write_error(path, e) from None
    except RuntimeError as e:  # torch.save reports a failed write of its zip this way
        if "PytorchStreamWriter failed" not in str(e) and "file write failed" not in str(e):
            raise
        raise write_error(path, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def write_error(path: Path, e: Exception) -> HotrecError:
    """One line for a write to `path` that failed; what was there before is kept."""
    why = e.strerror if isinstance(e, OSError) and e.strerror else "the write failed"
    kept = "the previous file is kept" if path.exists() else "nothing was written"
    return HotrecError(f"cannot write {path}: {why} ({kept})")


def write_json_atomic(path: Path, obj, indent: int | None = 2) -> None:
    with atomic_write(Path(path)) as f:
        f.write(json.dumps(obj, indent=indent) + "\n")


def write_lines_atomic(path: Path, lines: list[str]) -> None:
    with atomic_write(Path(path)) as f:
        f.write("".join(line + "\n" for line in lines))


def read_json_object(path: Path) -> dict:
    """A JSON file that must hold an object."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HotrecError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise HotrecError(f"{path} is not a JSON object")
    return obj


def append_json_line(path: Path, record: dict) -> None:
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as e:  # at most this line is torn: readers drop a torn last line
        raise write_error(path, e) from None


def read_json_lines(path: Path, on_torn: Callable[[int], None] | None = None) -> list[dict]:
    """The objects of a JSON-lines file. A torn last line (a write cut short by a crash) is
    dropped (`on_torn(line number)` is told); any other line that is not a JSON object is an
    error naming the line."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError as e:
        raise HotrecError(f"{path} is not text: {e}") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            if i == len(numbered) - 1 and not line.rstrip().endswith("}"):
                if on_torn is not None:
                    on_torn(n)
                break  # torn last line
            raise HotrecError(f"{path}:{n}: not a JSON record; fix or remove that line")
        records.append(record)
    return records
