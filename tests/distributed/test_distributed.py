"""Two ranks (torchrun, gloo, one thread each) against one process: the same parameters and
validation AUC with SGD and row-wise Adagrad, repeated ids inside and across ranks and a
table smaller than the world; a negative control (gradients averaged instead of summed)
that must differ; a failure on one rank ends every rank quickly with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.distributed.helpers import (
    assert_close,
    env,
    hotrec,
    loopback,
    model,
    train_with_control,
)

COMMON = ["--preset", "tiny", "--threads", "1", "--max-steps", "12", "--eval-every", "6"]

pytestmark = pytest.mark.skipif(not loopback(), reason="no loopback TCP for torch.distributed")


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory):
    """The one-process runs the parity tests and the negative control compare with."""
    root = tmp_path_factory.mktemp("one-process")

    def run(sparse: str, dense: str) -> Path:
        out = root / f"{sparse}-{dense}"
        if not out.exists():
            opts = [*COMMON, "--set", f"optim.sparse='{sparse}'", "--set", f"optim.dense='{dense}'"]
            one = hotrec("train", "--data", data, "--run-dir", out, *opts, cwd=root)
            assert one.returncode == 0, one.stderr
        return out

    return run


@pytest.mark.parametrize("sparse, dense", [("sgd", "sgd"), ("adagrad", "adam")])
def test_two_ranks_train_as_one_process(tmp_path, data, one_process, sparse, dense):
    opts = [*COMMON, "--set", f"optim.sparse='{sparse}'", "--set", f"optim.dense='{dense}'"]
    (tmp_path / "one").symlink_to(one_process(sparse, dense))
    two = hotrec("train", "--data", data, "--run-dir", "two", "--nproc", "2", *opts, cwd=tmp_path)
    assert two.returncode == 0, two.stderr
    assert "Traceback" not in two.stderr and "Warning" not in two.stderr, two.stderr
    assert two.stdout.count("run directory:") == 1  # said by the first rank only
    assert_close(model(tmp_path / "one"), model(tmp_path / "two"))
    r1, r2 = (json.loads((tmp_path / r / "result.json").read_text()) for r in ("one", "two"))
    d = r2["distributed"]
    assert d["world"] == 2 and d["backend"] == "gloo"
    sent = d["bytes_per_step"]  # per rank and step: ids go out twice (gather, update), rows
    crossing = sent["rows"] / (8 * 4)  # come back once and gradients go out once (D = 8)
    assert crossing > 0 and sent["gradients"] == sent["rows"]
    assert sent["ids"] == pytest.approx(2 * crossing * 8, rel=1e-3)
    dense = sum(v.numel() * 4 for k, v in model(tmp_path / "two").items()
                if "mlp" in k)  # fmt: skip
    assert sent["dense"] == dense  # every network gradient, once per step
    assert r1["steps"] == r2["steps"] > 6 and r1["samples"] == r2["samples"]
    for split in ("val", "test"):
        assert abs(r1[split]["auc"] - r2[split]["auc"]) < 1e-5
        assert r1[split]["rows"] == r2[split]["rows"]
    log = [json.loads(x) for x in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log].count("val") >= 2  # one log, written once
    # the checkpoint of two ranks is one process's: single-process eval reads it
    ev = hotrec("eval", tmp_path / "two", "--split", "test", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    assert abs(json.loads(ev.stdout.strip().splitlines()[-1])["auc"] - r2["test"]["auc"]) < 1e-6


def test_whole_tables_on_ranks_train_as_one_process(tmp_path, data, one_process):
    """--dist-sharding tables: table C3 (200 rows) on rank 0, the others on rank 1; the
    checkpoint's shards are put back by the same layout."""
    opts = [*COMMON, "--set", "optim.sparse='sgd'", "--set", "optim.dense='sgd'"]
    two = hotrec("train", "--data", data, "--run-dir", "tables", "--nproc", "2",
                 "--dist-sharding", "tables", *opts, cwd=tmp_path)  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert_close(model(one_process("sgd", "sgd")), model(tmp_path / "tables"))
    raw = torch.load(tmp_path / "tables" / "checkpoint.pt", weights_only=True)
    assert raw["shards"]["stores"]["embeddings.store"]["layout"] == "tables"


def test_negative_control_averaged_gradients_differ(tmp_path, data, one_process):
    """DDP's default (the mean over ranks) halves every dense gradient: it must not pass."""
    (tmp_path / "one").symlink_to(one_process("sgd", "sgd"))
    opts = [*COMMON, "--set", "optim.sparse='sgd'", "--set", "optim.dense='sgd'"]
    run = train_with_control("HOTREC_TEST_MEAN_GRADIENTS", "--data", data, "--run-dir", "mean",
                             *opts, cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr
    with pytest.raises(AssertionError):
        assert_close(model(tmp_path / "one"), model(tmp_path / "mean"))


def test_a_failing_rank_stops_every_rank_with_one_line(tmp_path, data):
    """A bad id in the second half of the first batch (rank 1's part), written after the
    dataset's cached range check: rank 1 fails in its loader, rank 0 is stopped."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(data, bad)
    assert hotrec("info", bad, cwd=tmp_path).returncode == 0  # the range check is cached
    sparse = bad / "train" / "sparse.npy"
    stat = sparse.stat()
    ids = np.load(sparse, mmap_mode="r+")
    ids[200, 0] = 10_000  # row 200 of batch 0 (256 rows): rank 1 reads rows 128..255
    ids.flush()
    del ids
    os.utime(sparse, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the cache still matches
    start = time.monotonic()
    args = ["train", "--data", bad, "--run-dir", "run", "--nproc", "2", *COMMON,
            "--set", "data.shuffle=false"]  # fmt: skip
    run = hotrec(*args, cwd=tmp_path, timeout=120)
    assert run.returncode != 0 and time.monotonic() - start < 90
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if ": error: " in x]
    assert len(errors) == 1 and "row 200" in errors[0] and "outside its 50 rows" in errors[0], (
        run.stderr
    )
    assert "Traceback" not in run.stderr, run.stderr


@pytest.mark.parametrize(
    "to_group, name",
    [(True, "SIGINT"), (False, "SIGTERM")],
    ids=["ctrl-c-to-the-group", "sigterm-to-the-launcher-alone"],
)
def test_a_stop_signal_stops_every_rank_with_a_checkpoint_that_one_process_resumes(
    tmp_path, data, to_group, name
):
    """Ctrl-C reaches the launcher and torchrun (one process group); SIGTERM from `docker
    stop` or Kubernetes the launcher alone. Either way the ranks get it once, stop at the
    same step and checkpoint; the launcher releases the run directory's lock, ends with 128 +
    the signal's number, and the run resumes on one process."""
    import signal

    args = [sys.executable, "-m", "hotrec", "train", "--data", str(data), "--run-dir", "run",
            "--nproc", "2", "--preset", "tiny", "--threads", "1", "--epochs", "400",
            "--set", "train.log_every=1"]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    log = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and log.read_text().count('"kind": "train"') >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    sig = signal.Signals[name]
    os.killpg(proc.pid, sig) if to_group else proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err, err
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["stopped"] == "interrupted" and result["stopped_by"] == name
    assert f"stopped by {name} at step" in out and "continue with" in out
    assert not (tmp_path / "run" / ".lock").exists()
    steps = result["steps"]
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == steps
    resumed = hotrec("train", "--resume", "run", "--max-steps", steps + 2, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "run" / "result.json").read_text())["steps"] == steps + 2


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--schedule", "device_only"], "does not run --schedule device_only"),
        (["--representations", "table,qr"], "--representations trains on one process"),
        (["--nproc", "0"], "--nproc must be at least 1"),
    ],
)
def test_what_does_not_run_on_several_ranks_refuses_in_one_line(tmp_path, data, extra, message):
    args = ["train", "--data", data, "--run-dir", "run", "--preset", "tiny", *extra]
    if "--nproc" not in extra:
        args += ["--nproc", "2"]
    run = hotrec(*args, cwd=tmp_path, timeout=120)
    lines = [x for x in run.stderr.splitlines() if x.strip()]
    assert run.returncode == 2 and len(lines) == 1 and message in lines[0], run.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize(
    "placement, message",
    [
        ({"schedule": "fae", "slipstream": True, "slipstream_mode": "freeze"}, "mode freeze"),
        ({"schedule": "baseline", "slipstream": True}, "--slipstream over the baseline"),
        ({"schedule": "fae", "reprofile_every": 10}, "re-profiling"),
        ({"schedule": "hotline", "lookahead": 2}, "look-ahead gather"),
        ({"schedule": "hotline", "hotline_split": "split"}, "split micro-batches"),
    ],
)
def test_each_unsupported_combination_is_refused_before_training(placement, message):
    """The refusals the command line shows above, one by one, without starting ranks."""
    from dataclasses import replace

    from hotrec.config import RunConfig
    from hotrec.distributed.group import Dist
    from hotrec.distributed.training import check_supported
    from hotrec.errors import HotrecError

    cfg = RunConfig()
    cfg = replace(cfg, placement=replace(cfg.placement, **placement))
    check_supported(cfg, "cpu", Dist())  # one process runs everything
    with pytest.raises(HotrecError, match=message):
        check_supported(cfg, "cpu", Dist(rank=0, world=2))


def test_a_run_stopped_on_two_ranks_resumes_on_two_or_one_as_if_uninterrupted(tmp_path, data):
    """Checkpoints hold the whole store, so the world size may change at a resume."""
    opts = ["--preset", "tiny", "--threads", "1", "--eval-every", "0",
            "--set", "optim.sparse='adagrad'", "--set", "data.shuffle=true"]  # fmt: skip
    full = hotrec("train", "--data", data, "--run-dir", "full", "--max-steps", 8, *opts,
                  cwd=tmp_path)  # fmt: skip
    assert full.returncode == 0, full.stderr
    first = hotrec("train", "--data", data, "--run-dir", "cut", "--nproc", 2,
                   "--max-steps", 3, *opts, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr
    import shutil

    for world in ("2", "1"):
        run = f"cut{world}"
        shutil.copytree(tmp_path / "cut", tmp_path / run)
        rest = hotrec("train", "--resume", run, "--nproc", world, "--max-steps", 8, cwd=tmp_path)
        assert rest.returncode == 0, rest.stderr
        assert_close(model(tmp_path / "full"), model(tmp_path / run))
