"""One worker process per serving device, each holding the artifact's models.

Why processes: the server's event loop parses requests in Python while a batch runs, and a
model thread in the same process has to win the interpreter lock back between operators;
measured here, a DHE/hybrid forward pass took 3.5x longer while the loop was busy. In its
own process a model runs undisturbed, and CPU and GPU paths run truly in parallel. A batch
travels as two numpy arrays over a pipe (a few tens of kB: well under a millisecond).

The server's front end keeps a model-less Predictor for input checks; `attach()` makes its
predict() forward to these workers, so the batcher and the profiler need not know.

Supervision: a worker that dies (killed, out of memory) is noticed at its next query or by
a watchdog within WATCH_S, whichever comes first; its queries fail with WorkerDown (the
server answers 503 with Retry-After) while a new worker loads the models, and `health()`
reports each device's state and restarts, so /healthz says "degraded" meanwhile.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import threading
from pathlib import Path

import numpy as np

from hotrec.errors import HotrecError
from hotrec.serving.paths import ServingPath
from hotrec.serving.predictor import Predictor

START_TIMEOUT_S = 300.0
WATCH_S = 0.5  # how often the watchdog looks at the worker processes
RETRY_AFTER_S = 2  # what a query refused while its worker restarts is told


class WorkerDown(HotrecError):
    """A query's worker process is down (restarting): the query was not answered."""

    retry_after_s = RETRY_AFTER_S


def _worker_main(
    conn, path: str, representations, device: str, max_batch: int, threads: int, mp_cache: int
):
    """Load the models on `device`, then answer (path name, dense, sparse) until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the front end decides when to stop
    import torch

    if threads:
        torch.set_num_threads(threads)
    try:
        predictor = Predictor.load(Path(path), representations, [device], max_batch, True, mp_cache)
        predictor.warm_up()
    except Exception as e:  # reported to the front end as one line
        conn.send(("error", str(e) if isinstance(e, HotrecError) else f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", predictor.mp_cache))
    while True:
        try:
            message = conn.recv()
        except EOFError:  # the front end is gone
            return
        if message is None:
            return
        name, dense, sparse = message
        try:
            conn.send(("ok", predictor.predict(predictor.path(name), dense, sparse)))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


class WorkerPool:
    """predict(path, dense, sparse) runs on the worker process of path.device."""

    def __init__(
        self, artifact: Path, representations: list[str] | None, devices: list[str],
        max_batch: int = 4096, threads: int = 0, mp_cache: int = 0,
    ) -> None:  # fmt: skip
        self.artifact, self.representations = Path(artifact), representations
        self.devices, self.max_batch, self.threads = devices, max_batch, threads
        self.mp_cache = mp_cache  # ids per feature in each deep-hash model's MP-Cache
        self.cached: dict[str, int] = {}  # representation -> cached ids (from the workers)
        self.conns: dict[str, object] = {}
        self.procs: dict[str, mp.Process] = {}
        self.locks = {d: threading.Lock() for d in devices}
        self.state = {d: "starting" for d in devices}  # up | restarting | starting | stopped
        self.restarts = {d: 0 for d in devices}
        self.lost = 0  # queries that failed because their worker died
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> WorkerPool:
        """Start one process per device and wait until each has loaded its models."""
        for d in self.devices:
            self._spawn(d)
        for d in self.devices:
            try:
                self.cached = self._ready(d)
            except HotrecError:
                self.close()
                raise
            self.state[d] = "up"
        self._watchdog = threading.Thread(target=self._watch, daemon=True, name="hotrec-watch")
        self._watchdog.start()
        return self

    def _spawn(self, d: str) -> None:
        ctx = mp.get_context("spawn")
        ours, theirs = ctx.Pipe()
        args = (theirs, str(self.artifact), self.representations, d, self.max_batch,
                self.threads, self.mp_cache)  # fmt: skip
        proc = ctx.Process(target=_worker_main, args=args, name=f"hotrec-{d}", daemon=True)
        proc.start()
        theirs.close()
        self.conns[d], self.procs[d] = ours, proc

    def _ready(self, d: str):
        """Wait for worker `d` to load the models; its MP-Cache sizes."""
        if not self.conns[d].poll(START_TIMEOUT_S):
            raise HotrecError(f"the {d} worker did not load the models in time")
        kind, detail = self._recv(d)
        if kind != "ready":
            raise HotrecError(f"the {d} worker cannot load the artifact: {detail}")
        return detail

    def _watch(self) -> None:
        """Notice a dead worker without waiting for its next query."""
        while not self._stop.wait(WATCH_S):
            for d in self.devices:
                if self.state[d] == "up" and not self.procs[d].is_alive():
                    self._down(d)

    def _down(self, d: str) -> None:
        """Worker `d` died: mark it and load a new one in the background (once)."""
        with self.locks[d]:
            if self.state[d] != "up" or self._stop.is_set():
                return
            self.state[d] = "restarting"
        threading.Thread(target=self._respawn, args=(d,), daemon=True).start()

    def _respawn(self, d: str) -> None:
        old = self.procs[d]
        old.join(timeout=5)
        self.conns[d].close()
        while not self._stop.is_set():
            self._spawn(d)
            try:
                self._ready(d)
            except (HotrecError, RuntimeError):  # it loaded before: try again, a little later
                self.procs[d].kill()
                self._stop.wait(1.0)
                continue
            with self.locks[d]:
                self.restarts[d] += 1
                self.state[d] = "up"
            return

    def health(self) -> dict[str, dict]:
        """Each device's worker: state and restarts so far."""
        return {d: {"state": self.state[d], "restarts": self.restarts[d]} for d in self.devices}

    def attach(self, predictor: Predictor) -> Predictor:
        """Make predictor.predict run here."""
        predictor.remote = self
        predictor.mp_cache = dict(self.cached)
        return predictor

    def predict(self, path: ServingPath, dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        d = path.device
        with self.locks[d]:
            alive = self.state[d] == "up"
            if alive:
                try:
                    self.conns[d].send((path.name, dense, sparse))
                    kind, value = self._recv(d)
                except (OSError, RuntimeError):  # the pipe broke: the worker is gone
                    alive = False
        if not alive:
            self.lost += 1
            self._down(d)
            raise WorkerDown(f"the {d} worker is restarting")
        if kind != "ok":
            raise RuntimeError(f"{path.name}: {value}")
        return value

    def _recv(self, device: str):
        try:
            return self.conns[device].recv()
        except (EOFError, OSError):
            code = self.procs[device].exitcode
            raise RuntimeError(f"the {device} worker process died (exit code {code})") from None

    def close(self) -> None:
        """Ask each worker to stop, then wait for it (killing one that does not stop)."""
        self._stop.set()
        self.state = {d: "stopped" for d in self.devices}
        for conn in self.conns.values():
            try:
                conn.send(None)
            except (OSError, ValueError):
                pass
        for proc in self.procs.values():
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self.conns.values():
            conn.close()
        self.conns, self.procs = {}, {}
