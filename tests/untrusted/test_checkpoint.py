"""Checkpoints from elsewhere: a crafted pickle never runs, damage is refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hotrec.cli.main import main
from hotrec.training import runlog
from tests.untrusted.helpers import flip_bytes, one_line_error, tensor_data_offset


class Payload:
    """Unpickling this calls Path.touch(marker): the stand-in for os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from tests.conftest import write_toy_dataset

    root = tmp_path_factory.mktemp("ckpt")
    data = write_toy_dataset(root / "ds", rows=600)
    run = root / "run"
    argv = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(run)]
    assert main(argv + ["--max-steps", "6"]) == 0
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path):
    import shutil

    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    (dst / runlog.BEST).unlink()  # eval then reads checkpoint.pt, the file these tests damage
    return dst


def _craft(run: Path, marker: Path, name: str = runlog.CHECKPOINT) -> None:
    """Replace a checkpoint by one whose pickle calls a function when loaded."""
    state = torch.load(run / name, weights_only=True)
    state["state"]["evil"] = Payload(marker)
    torch.save(state, run / name)


def test_a_crafted_best_checkpoint_runs_no_code(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    marker = tmp_path / "pwned"
    _craft(run, marker, runlog.BEST)
    one_line_error(capsys, ["eval", str(run)], "best.pt", "refused")
    assert not marker.exists()


@pytest.mark.parametrize("command", ["eval", "resume"])
def test_a_crafted_checkpoint_runs_no_code(run_copy, tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    _craft(run_copy, marker)
    argv = ["eval", str(run_copy)] if command == "eval" else ["train", "--resume", str(run_copy)]
    one_line_error(capsys, argv, "checkpoint.pt", "refused")
    assert not marker.exists()


def test_negative_control_the_crafted_file_does_run_code_when_fully_unpickled(run_copy, tmp_path):
    marker = tmp_path / "pwned"
    _craft(run_copy, marker)
    torch.load(run_copy / runlog.CHECKPOINT, weights_only=False)  # what main used to do
    assert marker.exists()


def test_a_flipped_bit_in_tensor_data_is_detected(run_copy, capsys):
    path = run_copy / runlog.CHECKPOINT
    before = (run_copy / runlog.METRICS).read_text()
    flip_bytes(path, tensor_data_offset(path, b"data/0") + 3)
    one_line_error(capsys, ["eval", str(run_copy)], "checkpoint.pt", "checksum")
    one_line_error(capsys, ["train", "--resume", str(run_copy)], "checksum")
    assert (run_copy / runlog.METRICS).read_text() == before  # nothing already written lost


def test_torch_itself_does_not_notice_the_flip(run_copy):
    """Negative control: why the checksum exists."""
    path = run_copy / runlog.CHECKPOINT
    good = torch.load(path, weights_only=True)
    flip_bytes(path, tensor_data_offset(path, b"data/0") + 3)
    bad = torch.load(path, weights_only=True)
    first = next(iter(good["model"]))
    assert not torch.equal(good["model"][first], bad["model"][first])


@pytest.mark.parametrize("keep", [0, 100, 0.5])
def test_a_truncated_checkpoint_is_one_line(run_copy, capsys, keep):
    path = run_copy / runlog.CHECKPOINT
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep])
    one_line_error(capsys, ["eval", str(run_copy)], "checkpoint.pt")


def test_a_checkpoint_without_checksum_or_sections_is_refused(run_copy, capsys):
    path = run_copy / runlog.CHECKPOINT
    torch.save({"model": {}, "state": {}}, path)
    one_line_error(capsys, ["eval", str(run_copy)], "not a hotrec checkpoint")
    torch.save([torch.zeros(3)], path)
    one_line_error(capsys, ["eval", str(run_copy)], "not a hotrec checkpoint")


def test_a_damaged_config_json_is_one_line(run_copy, capsys):
    (run_copy / runlog.CONFIG).write_text('{"model": ')
    one_line_error(capsys, ["eval", str(run_copy)], "config.json")
    (run_copy / runlog.CONFIG).write_text(json.dumps({"train": {"epochs": "many"}}))
    one_line_error(capsys, ["eval", str(run_copy)])


def test_nan_in_the_data_file_names_the_file_and_row(tmp_path, capsys):
    import numpy as np

    from tests.conftest import write_toy_dataset

    data = write_toy_dataset(tmp_path / "ds", rows=600)
    dense = np.load(data / "train" / "dense.npy", mmap_mode="r+")
    dense[200, 1] = np.nan
    dense.flush()
    del dense
    argv = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(tmp_path / "r")]
    err = one_line_error(capsys, argv, "train/dense.npy row 200 column 1", "fix the data")
    assert "learning rate" not in err


def test_a_checkpoint_with_nan_parameters_is_not_restored(run_copy, capsys):
    from hotrec.training.checkpoint import load_checkpoint, save_checkpoint

    path = run_copy / runlog.CHECKPOINT
    state = load_checkpoint(path)
    name = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][name][0] = float("nan")
    save_checkpoint(path, state)  # a valid digest over NaN values
    one_line_error(capsys, ["train", "--resume", str(run_copy)], name, "NaN")
    one_line_error(capsys, ["eval", str(run_copy)], name)


def test_a_nan_loss_from_the_learning_rate_says_so(tmp_path, capsys):
    from tests.conftest import write_toy_dataset

    data = write_toy_dataset(tmp_path / "ds", rows=600)
    argv = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(tmp_path / "r")]
    one_line_error(capsys, argv + ["--lr", "1e30"], "learning rate")
