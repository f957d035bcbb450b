"""What the distributed tests share: running hotrec (one thread per process), reading a run's
checkpointed model, comparing parameters, and whether this machine can run torch.distributed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).parent


def loopback() -> bool:
    """Whether a TCP socket can listen on 127.0.0.1 (gloo's transport and torchrun's
    rendezvous need it)."""
    import socket

    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
        return True
    except OSError:
        return False


def env() -> dict:
    # a rank that aborts (SIGABRT from C++) prints every thread's Python stack into stderr
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def hotrec(*args, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "hotrec", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


def model(run: Path) -> dict:
    """The run's model state, read as `hotrec eval` reads it (shards of several ranks made
    whole)."""
    from hotrec.training.checkpoint import load_checkpoint

    return load_checkpoint(run / "checkpoint.pt")["model"]


def assert_close(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=atol, msg=k)


def train_with_control(control: str, *args, cwd: Path) -> subprocess.CompletedProcess:
    """`hotrec train ...` on 2 ranks through rank_main.py with the negative control `control`
    (an environment variable rank_main.py reads) switched on."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(HERE / "rank_main.py"), "train", *map(str, args)]  # fmt: skip
    return subprocess.run(cmd, cwd=cwd, env={**env(), control: "1"}, capture_output=True,
                          text=True, timeout=240)  # fmt: skip
