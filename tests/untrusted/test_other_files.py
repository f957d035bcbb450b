"""Run config, presets, serving profiles and the last-good checkpoint message."""

from __future__ import annotations

import json

import pytest

from hotrec.errors import HotrecError
from hotrec.training import runlog
from tests.untrusted.helpers import flip_bytes, one_line_error, tensor_data_offset
from tests.untrusted.test_checkpoint import run_copy, trained_run  # noqa: F401 (fixtures)


@pytest.mark.parametrize("config", [[1, 2], {"train": 7}, {"model": {"bottom_mlp": "x"}}])
def test_a_config_json_of_the_wrong_shape_is_one_line(run_copy, capsys, config):  # noqa: F811
    (run_copy / runlog.CONFIG).write_text(json.dumps(config))
    one_line_error(capsys, ["eval", str(run_copy)])


def test_a_binary_preset_file_is_one_line(tmp_path, toy_dataset, capsys):
    preset = tmp_path / "p.toml"
    preset.write_bytes(b"\xff\xfe\x00\x01")
    argv = ["train", "--data", str(toy_dataset), "--preset", str(preset)]
    one_line_error(capsys, argv + ["--run-dir", str(tmp_path / "r")], "p.toml")


@pytest.mark.parametrize("text", ["[1, 2]", '{"paths": 3}', "\u00ff not json", '{"paths": [[]]}'])
def test_a_bad_serving_profile_is_one_line(tmp_path, text):
    from hotrec.serving.profile import Profile

    path = tmp_path / "profile.json"
    path.write_text(text)
    with pytest.raises(HotrecError, match="profile.json"):
        Profile.load(path)


def test_a_corrupt_checkpoint_is_never_named_last_good(run_copy):  # noqa: F811
    from hotrec.training.diagnosis import last_good

    assert "(step " in last_good(run_copy)  # the good one is named with its step
    path = run_copy / runlog.CHECKPOINT
    flip_bytes(path, tensor_data_offset(path, b"data/0") + 1)
    message = last_good(run_copy)
    assert "none" in message and "checksum" in message and "(step" not in message
