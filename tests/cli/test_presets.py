"""Without --preset, training picks the preset of the dataset's source and says so."""

from __future__ import annotations

import json

import pytest

from hotrec.cli.main import main
from tests.conftest import write_toy_dataset


def with_source(path, source: str, **extra):
    data = write_toy_dataset(path, rows=800)
    meta = json.loads((data / "meta.json").read_text())
    (data / "meta.json").write_text(json.dumps({**meta, "source": source, **extra}))
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


@pytest.mark.parametrize(
    "profile, preset, sparse",
    [("criteo-kaggle", "criteo-kaggle", "adagrad"), ("tiny", None, "sgd")],
)
def test_synthetic_data_gets_its_profiles_preset(tmp_path, capsys, profile, preset, sparse):
    data = with_source(tmp_path / "ds", "synthetic", options={"profile": profile})
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--run-dir", str(run), "--max-steps", "2"]) == 0
    out = capsys.readouterr().out
    if preset:
        assert f"preset: {preset} (the dataset's source is synthetic, profile {profile}" in out
    else:
        assert "preset: none, the defaults (no preset for source synthetic, profile tiny" in out
    assert json.loads((run / "config.json").read_text())["optim"]["sparse"] == sparse


def test_dlrm_reference_is_the_reference_sgd_configuration():
    from hotrec.config import load_config

    ref, kaggle = load_config("dlrm-reference"), load_config("criteo-kaggle")
    assert (ref.optim.sparse, ref.optim.dense, ref.optim.sparse_lr) == ("sgd", "sgd", 0.1)
    assert ref.model == kaggle.model and (kaggle.optim.sparse, kaggle.optim.dense) == (
        "adagrad",
        "adam",
    )
