"""`hotrec train --nproc N`: start torchrun on this machine with N ranks of the same command.

torchrun (torch.distributed.run) does the real work: it starts the ranks, sets their
environment, and when one fails it stops the others. This launcher builds its command line
and keeps the terminal readable: the ranks' own output passes through; torchrun's log lines
and its closing traceback do not; a rank's one-line error is shown once, and a failure
without one ends with a line naming the rank and its exit code.

Stop signals: torchrun runs in a session of its own, so a signal reaches it only through this
launcher, once: Ctrl-C or SIGTERM sent to the launcher alone (`docker stop`, Kubernetes) or
to its whole process group (a terminal, systemd) is passed on to torchrun, which passes it
to the ranks (each in a session of its own too); they stop together after the current step
with a checkpoint, and the launcher ends with 128 + the signal's number (130, 143).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import contextmanager

LOG_LINE = re.compile(r"^\[?[IWEF]\d{4} \d\d:\d\d:\d\d")  # torchrun's logger
FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
SIGNALLED = re.compile(r"got signal: (2|15)\b|Received Signals\.SIG(INT|TERM)")
OMP_NOTE = ("*****", "Setting OMP_NUM_THREADS")
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """python -m torch.distributed.run --standalone --nproc-per-node N -m hotrec <argv>."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "hotrec", *argv,
    ]  # fmt: skip


def run_torchrun(nproc: int, argv: list[str], command: str = "train") -> int:
    """Run the ranks; 0 when every rank finished, 128 + the signal's number when a stop
    signal ended them (each with a checkpoint), else the failed rank's exit status."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # the ranks share the cores (--threads sets more)
    proc = subprocess.Popen(
        torchrun_command(nproc, argv),
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # signals reach it through forward_signals only: once
    )
    with forward_signals(proc) as received:
        code = _show(proc, command)
    if received:
        return 128 + received[0]
    return code


@contextmanager
def forward_signals(proc: subprocess.Popen):
    """Pass SIGINT, SIGTERM and SIGHUP on to `proc` while the block runs; yields the list of
    the signals received, first first."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def forward(signum, frame):
        received.append(signum)
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _show(proc: subprocess.Popen, command: str) -> int:
    """Show torchrun's output as the module docstring says; its exit status."""
    said: set[str] = set()
    failed = None  # (exit code, local rank) of the first failure torchrun reported
    stopped: list[str] = []  # peers' "stopped: another rank failed", shown only when alone
    interrupted = 0  # the stop signal torchrun passed on to the ranks (its number)
    tail = False  # past the start of torchrun's closing report
    for line in proc.stderr:
        interrupted = interrupted or _signal_in(line)
        if tail:
            continue  # torchrun's closing report and traceback
        match = FAILED.search(line)
        if match:
            failed = (int(match.group(1)), int(match.group(2)))
            tail = True
            continue
        if line.startswith("Traceback (most recent call last)"):  # torchrun's own; a rank's
            tail = True  # are prefixed with [rankN]
            continue
        key = line.strip()
        if LOG_LINE.match(line) or line.startswith(OMP_NOTE):
            continue
        if interrupted and not key.startswith("hotrec "):
            continue  # torchrun's report of the signal
        if key.startswith("hotrec ") and ": stopped: " in key:
            stopped.append(line)
            continue
        if key.startswith("hotrec ") and key in said:
            continue  # every rank said the same: shown once
        said.add(key)
        sys.stderr.write(line)
        sys.stderr.flush()
    code = proc.wait()
    if interrupted:
        return 128 + interrupted
    errors = any(": error: " in key for key in said)
    if code and not errors:
        if stopped:
            sys.stderr.write(stopped[0])
        elif failed is not None:
            rank, status = failed[1], failed[0]
            print(
                f"hotrec {command}: error: rank {rank} failed (exit code {status})", file=sys.stderr
            )
    return 2 if code and errors else code


def _signal_in(line: str) -> int:
    """The number of the stop signal torchrun reports receiving in `line`, else 0."""
    match = SIGNALLED.search(line)
    if match is None:
        return 0
    return int(match.group(1) or signal.Signals["SIG" + match.group(2)])


def rank_argv(argv: list[str], run_dir: str | None) -> list[str]:
    """The command each rank runs: `argv` without --nproc, with --run-dir fixed once here
    (a default made of the time on each rank could differ)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        out.append(a)
    if run_dir is not None:
        out += ["--run-dir", run_dir]
    return out
