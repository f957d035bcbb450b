"""Stop requests during training: Ctrl-C (SIGINT) and SIGTERM (what a scheduler, `docker stop`
or Kubernetes sends) ask the loop to stop after the current step, with a checkpoint."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest(threading.Event):
    """Set when a stop was asked for; `by` names the signal (SIGINT, SIGTERM)."""

    by: str | None = None


@contextmanager
def stop_on_signals():
    """The first SIGINT or SIGTERM asks the loop to stop after the current step (with a
    checkpoint); a second SIGINT stops at once (KeyboardInterrupt)."""
    flag = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum, frame):
        if flag.is_set() and signum == signal.SIGINT:  # second Ctrl-C: stop now
            signal.signal(signal.SIGINT, previous[signal.SIGINT])
            raise KeyboardInterrupt
        flag.by = flag.by or signal.Signals(signum).name
        flag.set()

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
