"""`hotrec train --nproc N`: start torchrun on this machine with N ranks of the same command.

torchrun (torch.distributed.run) does the real work: it starts the ranks, sets their
environment, and when one fails it stops the others. This launcher builds its command line
and keeps the terminal readable: the ranks' own output passes through; torchrun's log lines
and its closing traceback do not; a rank's one-line error is shown once, and a failure
without one ends with a line naming the rank and its exit code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

LOG_LINE = re.compile(r"^\[?[IWEF]\d{4} \d\d:\d\d:\d\d")  # torchrun's logger
FAILED = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
SIGNALLED = re.compile(r"got signal: (2|15)\b|Received Signals\.SIG(INT|TERM)")
OMP_NOTE = ("*****", "Setting OMP_NUM_THREADS")


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """python -m torch.distributed.run --standalone --nproc-per-node N -m hotrec <argv>."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "hotrec", *argv,
    ]  # fmt: skip


def run_torchrun(nproc: int, argv: list[str], command: str = "train") -> int:
    """Run the ranks; 0 when every rank finished, else the failed rank's exit status."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # the ranks share the cores (--threads sets more)
    proc = subprocess.Popen(
        torchrun_command(nproc, argv), stderr=subprocess.PIPE, text=True, env=env
    )
    said: set[str] = set()
    failed = None  # (exit code, local rank) of the first failure torchrun reported
    stopped: list[str] = []  # peers' "stopped: another rank failed", shown only when alone
    interrupted = False  # Ctrl-C (or SIGTERM): torchrun passes it on to the ranks
    tail = False  # past the start of torchrun's closing report
    lines = iter(proc.stderr)
    while True:
        try:
            line = next(lines, None)
        except KeyboardInterrupt:  # torchrun got it too and passes it on to the ranks, which
            interrupted = True  # stop together after the current step, with a checkpoint
            continue
        if line is None:
            break
        interrupted = interrupted or bool(SIGNALLED.search(line))
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
    code = _wait(proc)
    if interrupted:
        return 130
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


def _wait(proc: subprocess.Popen) -> int:
    """torchrun's exit status (a second Ctrl-C while it shuts the ranks down is ignored)."""
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:
            continue
