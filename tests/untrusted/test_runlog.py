"""The metrics log of a run: a torn last line is dropped, other damage is one line."""

from __future__ import annotations

import json

import pytest

from hotrec.errors import HotrecError
from hotrec.training import runlog
from tests.untrusted.helpers import one_line_error
from tests.untrusted.test_checkpoint import run_copy, trained_run  # noqa: F401 (fixtures)


def test_a_torn_last_line_is_dropped_on_resume(run_copy, capsys):  # noqa: F811
    log = run_copy / runlog.METRICS
    records = runlog.read_metrics(run_copy)
    with open(log, "a") as f:
        f.write('{"kind": "train", "st')  # a crash in the middle of a write
    assert runlog.read_metrics(run_copy) == records
    from hotrec.cli.main import main

    assert main(["train", "--resume", str(run_copy), "--epochs", "6"]) == 0
    after = runlog.read_metrics(run_copy)
    steps = [r["step"] for r in after if r["kind"] == "train"]
    assert steps == sorted(steps) and steps[-1] > 4  # the run went on past the checkpoint
    assert [r for r in after if r["step"] <= 4 and not r.get("final")] == [
        r for r in records if not r.get("final")
    ]


@pytest.mark.parametrize("bad", ["not json at all}", "[1, 2]", "{]"])
def test_a_damaged_middle_line_is_one_line_and_nothing_is_rewritten(run_copy, capsys, bad):  # noqa: F811
    log = run_copy / runlog.METRICS
    lines = log.read_text().splitlines()
    lines.insert(0, bad)
    log.write_text("\n".join(lines) + "\n")
    before = log.read_text()
    one_line_error(
        capsys, ["train", "--resume", str(run_copy), "--max-steps", "8"], "metrics.jsonl:1"
    )
    assert log.read_text() == before


def test_read_metrics_on_binary_garbage(tmp_path):
    (tmp_path / runlog.METRICS).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HotrecError, match="metrics.jsonl"):
        runlog.read_metrics(tmp_path)
    (tmp_path / runlog.METRICS).write_text(json.dumps({"step": 1}) + "\n")
    assert runlog.read_metrics(tmp_path) == [{"step": 1}]
