"""Without --preset, training picks the preset of the dataset's source and says so."""

from __future__ import annotations

import json

import pytest

from hotrec.cli.main import main
from tests.conftest import write_toy_dataset


def with_source(path, source: str):
    data = write_toy_dataset(path, rows=800)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "source": source}))
    return data


@pytest.mark.parametrize(
    "source, preset, batch_size",
    [("movielens-100k", "movielens", 256), ("avazu", "avazu", 2048), ("toy", None, None)],
)
def test_the_sources_preset_is_used_and_printed(tmp_path, capsys, source, preset, batch_size):
    data = with_source(tmp_path / "ds", source)
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--run-dir", str(run), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    cfg = json.loads((run / "config.json").read_text())
    if preset:
        assert f"preset: {preset} (the dataset's source is {source}" in out
        assert cfg["data"]["batch_size"] == batch_size
    else:
        assert "preset: none, the defaults" in out
        assert cfg["data"]["batch_size"] == 1024  # the defaults'


def test_an_explicit_preset_wins(tmp_path, capsys):
    data = with_source(tmp_path / "ds", "movielens-100k")
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--run-dir", str(run), "--max-steps", "2"]
    assert main(argv + ["--preset", "criteo-kaggle"]) == 0
    assert "preset:" not in capsys.readouterr().out
    assert json.loads((run / "config.json").read_text())["data"]["batch_size"] == 1024
