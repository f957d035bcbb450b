"""What the serving tests share: tiny artifacts (untrained toy-sized DLRMs with chosen val
metrics) and `hotrec serve` run as a process on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

from hotrec.config import ModelConfig, RunConfig
from hotrec.models.artifact import Entry, save_artifact
from hotrec.models.builders import build_dlrm
from hotrec.types import Schema, TableSpec
from tests.conftest import write_toy_dataset

SMALL = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
LARGE = ModelConfig(embedding_dim=8, bottom_mlp=(32, 8), top_mlp=(64, 32, 1))


def make_artifact(
    tmp: Path,
    reps: dict[str, tuple[ModelConfig, float]] | None = None,
    dataset: Path | None = None,
) -> Path:
    """An artifact over the toy dataset (or `dataset`): name -> (model config, val accuracy)."""
    reps = reps or {"small": (SMALL, 0.70), "large": (LARGE, 0.75)}
    data = dataset or write_toy_dataset(tmp / "toy", rows=600)
    schema = Schema.from_dict(json.loads((data / "meta.json").read_text())["schema"])
    cfg = RunConfig()
    entries = []
    for i, (name, (model_cfg, acc)) in enumerate(reps.items()):
        model = build_dlrm(schema, model_cfg, cfg.optim, seed=i)
        val = {"auc": acc + 0.05, "logloss": 0.5, "accuracy": acc, "rows": 90}
        entries.append(Entry(name, model_cfg, val, val, 0, model))
    return save_artifact(tmp / "artifact", schema, cfg, entries, data)


def criteo_like_dataset(tmp: Path, vocab: dict[str, list[int]]) -> Path:
    """A toy dataset that claims to be Criteo-prepared, with vocab/<table>.npy keys."""
    tables = tuple(TableSpec(name, len(keys) + 1) for name, keys in vocab.items())
    data = write_toy_dataset(tmp / "criteo-toy", rows=300, table_rows=tuple(t.rows for t in tables))
    meta = json.loads((data / "meta.json").read_text())
    meta["source"] = "criteo-kaggle"
    meta["schema"]["tables"] = [{"name": t.name, "rows": t.rows} for t in tables]
    (data / "meta.json").write_text(json.dumps(meta))
    (data / "vocab").mkdir()
    for name, keys in vocab.items():
        np.save(data / "vocab" / f"{name}.npy", np.array(keys, dtype=np.int64))
    return data


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: Path, *options: str) -> subprocess.Popen:
    """`hotrec serve ARTIFACT --port P *options` started (not yet healthy); `.url` is its
    address. Stop it with stop_server."""
    port = free_port()
    cmd = [sys.executable, "-m", "hotrec.cli.main", "serve", str(artifact), "--port", str(port),
           *map(str, options)]  # fmt: skip
    env = {**os.environ, "HOTREC_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    proc.url, proc.port = f"http://127.0.0.1:{port}", port
    return proc


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1) as r:
                if json.loads(r.read())["status"] == "ok":
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not come up")


def stop_server(proc: subprocess.Popen, seconds: float = 60.0) -> str:
    """SIGTERM, then the server must end cleanly (status 0, no traceback); its output."""
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=seconds)
    assert proc.returncode == 0 and "Traceback" not in stderr, stderr
    return stdout + stderr
