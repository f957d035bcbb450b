"""Runs that lose nothing: SIGTERM checkpoints like Ctrl-C, a torn tail of the metrics log is
dropped on resume and said, and one run directory has one writer (a live holder refuses a
second one by name; a stale lock is reported and taken over only with --force)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

from hotrec.cli.main import main
from hotrec.training.lock import LOCK
from tests.conftest import write_toy_dataset

TINY = ["--preset", "tiny", "--set", "data.batch_size=64"]


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "hotrec", "train", "--data", str(data), "--run-dir", str(run),
           *TINY, "--epochs", "1000", "--eval-every", "0"]  # fmt: skip
    env = {**os.environ, "HOTREC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)  # fmt: skip
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):  # training
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM: not taken for finished
    result = json.loads((run / "result.json").read_text())
    assert result["stopped"] == "interrupted" and result["stopped_by"] == "SIGTERM"
    assert result["steps"] > 0 and (run / "checkpoint.pt").is_file()
    said = " ".join((out + err).split())
    assert f"stopped by SIGTERM at step {result['steps']:,}: checkpoint saved" in said
    assert f"hotrec train --resume {run}" in said
    assert not (run / LOCK).exists()  # the run directory is free again


def test_a_torn_metrics_tail_is_dropped_on_resume_and_said(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--run-dir", str(run), *TINY,
                 "--max-steps", "4", "--set", "train.log_every=1"]) == 0  # fmt: skip
    log = run / "metrics.jsonl"
    whole = log.read_text()
    log.write_text(whole + '{"step": 5, "loss": 0.6')  # a write cut short
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--max-steps", "6"]) == 0
    printed = capsys.readouterr()
    said = " ".join((printed.out + printed.err).split())
    assert "dropped its torn last line" in said and str(log) in said
    records = [json.loads(line) for line in log.read_text().splitlines()]  # all valid now
    assert [r["step"] for r in records if "loss" in r][-1] == 6


def holder(pid: int, host: str | None = None) -> str:
    return json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "earlier"})


def test_a_live_holder_refuses_a_second_writer_by_name(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    run.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run / LOCK).write_text(holder(sleeper.pid))  # another hotrec train, still running
        args = ["train", "--data", str(data), "--run-dir", str(run), *TINY, "--max-steps", "2"]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"is in use by pid {sleeper.pid} on {socket.gethostname()}" in err
        assert len(err.strip().splitlines()) == 1
        assert main([*args, "--force"]) == 2  # --force never takes a live holder's lock
        assert not (run / "config.json").exists()  # nothing written
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_is_reported_and_taken_over_with_force(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    run.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a run that was killed: its pid runs no more
    (run / LOCK).write_text(holder(gone.pid))
    args = ["train", "--data", str(data), "--run-dir", str(run), *TINY, "--max-steps", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"stale lock: pid {gone.pid}" in err and "--force" in err
    assert main([*args, "--force"]) == 0
    printed = capsys.readouterr()
    assert "taking over the stale lock" in " ".join((printed.out + printed.err).split())
    assert json.loads((run / "result.json").read_text())["steps"] == 2
    assert not (run / LOCK).exists()


def limited_file_size(limit: int):
    """For subprocess.run(preexec_fn=...): writes past `limit` bytes fail with EFBIG, as on a
    full disk (SIGXFSZ ignored, so the write returns the error instead of killing)."""

    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_previous(tmp_path):
    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--run-dir", str(run), *TINY,
                 "--max-steps", "4"]) == 0  # fmt: skip
    ckpt = run / "checkpoint.pt"
    before = ckpt.read_bytes()
    cmd = [sys.executable, "-m", "hotrec", "train", "--resume", str(run), "--max-steps", "8"]
    env = {**os.environ, "HOTREC_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240,
                       preexec_fn=limited_file_size(len(before) // 2))  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"cannot write {ckpt}: File too large (the previous file is kept)" in r.stderr
    assert ckpt.read_bytes() == before  # the previous checkpoint, whole
    assert not list(run.glob(".*.tmp-*"))  # no partial file left beside it
    assert main(["train", "--resume", str(run), "--max-steps", "8"]) == 0  # it still resumes


def test_a_run_directory_that_cannot_be_made_is_one_line(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds")
    (tmp_path / "file").write_text("not a directory")
    args = ["train", "--data", str(data), "--run-dir", str(tmp_path / "file" / "run"), *TINY]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "file") in err and "Not a directory" in err
