"""Without a terminal (CI, nohup, a pipe, a log file): a plain progress line every few
seconds (step, rate, ETA, loss, val AUC once known) and tables at their full width."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import write_toy_dataset

LINE = re.compile(
    r"^train: [\d,]+/[\d,]+ steps \(\d+%\), [\d,]+ samples/s, ETA \d+s, loss \d\.\d{4}"
)


def test_a_run_without_a_terminal_prints_plain_progress_and_whole_tables(tmp_path):
    data = write_toy_dataset(tmp_path / "ds")
    env = {k: v for k, v in os.environ.items() if k not in ("HOTREC_PROGRESS", "COLUMNS")}
    env.update(HOTREC_PROGRESS_EVERY="0.05", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "hotrec", "train", "--data", str(data), "--run-dir",
           str(tmp_path / "run"), "--preset", "tiny", "--epochs", "8", "--eval-every", "10",
           "--set", "data.batch_size=64"]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert r.returncode == 0, r.stderr
    progress = [line for line in r.stderr.splitlines() if line.startswith("train: ")]
    assert len(progress) >= 2 and all(LINE.match(line) for line in progress), r.stderr
    assert any("val AUC 0." in line for line in progress)  # once a validation ran
    table = [line for line in r.stdout.splitlines() if "┃" in line or "│" in line]
    assert table and "…" not in r.stdout  # nothing cut to fit 80 columns
    info = [line for line in r.stdout.splitlines() if line.startswith("embedding table:")]
    assert info and len(info[0]) > 80  # a long line stays one line
