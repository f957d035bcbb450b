"""One writer per run directory: `RUN/.lock`, created exclusively (O_CREAT | O_EXCL, which
also holds on network filesystems), names its holder (pid, host, start time) and is removed
when the run ends. A second `hotrec train` on the same directory is refused with one line
naming the holder; a lock whose holder is gone (its pid no longer runs on this host) is
reported as stale and taken over only with --force."""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from hotrec.errors import HotrecError
from hotrec.progress import console

LOCK = ".lock"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(path: Path) -> dict:
    """The lock's holder as written (empty while its holder is still writing it)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another hotrec process (its lock is being written)"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


def acquire(run_dir: Path, force: bool = False) -> Path:
    """Take the run directory's lock (creating the directory); its path. Raises HotrecError
    when another process holds it, or when a stale lock is in the way without `force`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            here = holder.get("host") == me["host"]
            if not holder or not here or _running(int(holder.get("pid", 0))):
                raise HotrecError(
                    f"{run_dir} is in use by {_describe(holder)} (another hotrec train); wait "
                    "for it to finish or use another --run-dir"
                ) from None
            if not force:
                raise HotrecError(
                    f"{run_dir} has a stale lock: {_describe(holder)} is no longer running "
                    f"(a run that was killed); take it over with --force"
                ) from None
            console.print(f"{run_dir}: taking over the stale lock of {_describe(holder)}")
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(me) + "\n")
        return path
    raise HotrecError(f"{run_dir}: another process took the lock first; try again")


def release(path: Path) -> None:
    """Remove our lock (if it is still ours)."""
    if _holder(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)


@contextmanager
def run_dir_lock(run_dir: Path, force: bool = False):
    """Hold the run directory's lock for the duration (a directory made only for the lock
    is removed again when nothing else was written into it: a run refused at start leaves
    nothing behind)."""
    run_dir = Path(run_dir).absolute()
    made = [d for d in (run_dir, *run_dir.parents) if not d.exists()]  # innermost first
    path = acquire(run_dir, force)
    try:
        yield path
    finally:
        release(path)
        for d in made:  # the directories made for the lock, while nothing else is in them
            if any(d.iterdir()):
                break
            d.rmdir()
