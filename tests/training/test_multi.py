"""One model per representation in one command, written to one artifact that reloads exactly."""

from __future__ import annotations

import json

import pytest
import torch

from hotrec.cli.main import main
from hotrec.config import load_config
from hotrec.data.format import open_dataset
from hotrec.errors import HotrecError
from hotrec.models.artifact import load_artifact, read_manifest
from hotrec.training.multi import parse_representations, train_representations
from tests.conftest import write_toy_dataset


def test_parse_representations_refuses_unknown_and_repeated():
    assert parse_representations("table, qr") == ["table", "qr"]
    for bad in ("table,foo", "", "table,table"):
        with pytest.raises(HotrecError):
            parse_representations(bad)


def test_artifact_holds_every_representation_and_reloads_it(tmp_path):
    data = write_toy_dataset(tmp_path / "ds", rows=1500)
    cfg = load_config("tiny", [f"data.path='{data}'", "data.batch_size=64"])
    out = train_representations(cfg, ["table", "qr"], tmp_path / "run")
    assert out["stopped"] == "completed"
    manifest = read_manifest(tmp_path / "run" / "artifact")
    assert list(manifest["representations"]) == ["table", "qr"]
    for name, info in manifest["representations"].items():
        result = json.loads((tmp_path / "run" / name / "result.json").read_text())
        assert info["val"] == result["val"]  # the metrics training measured
        assert info["model"]["embedding"] == name
        assert info["param_bytes"] > 0
    art = load_artifact(tmp_path / "run" / "artifact")
    batch = open_dataset(data).split("test")
    dense = torch.from_numpy(batch.dense[:50].copy())
    sparse = torch.from_numpy(batch.sparse[:50].astype("int64"))
    for name in ("table", "qr"):
        run = json.loads((tmp_path / "run" / name / "config.json").read_text())
        assert run["model"]["embedding"] == name
        ckpt = torch.load(tmp_path / "run" / name / "checkpoint.pt", weights_only=True)
        model = art.models[name]
        for key, value in ckpt["model"].items():
            assert torch.equal(model.state_dict()[key], value), key
        assert model(dense, sparse).shape == (50,)
    # The table's rows are larger than qr's.
    sizes = {n: i["param_bytes"] for n, i in manifest["representations"].items()}
    assert sizes["qr"] < sizes["table"]


def test_cli_representations_resume_reuses_finished_runs(tmp_path, capsys):
    data = write_toy_dataset(tmp_path / "ds", rows=1200)
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(run)]
    assert main([*args, "--representations", "table"]) == 0
    first = (run / "table" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["train", "--representations", "table,qr", "--resume", str(run)]) == 0
    assert (run / "table" / "checkpoint.pt").stat().st_mtime_ns == first  # not retrained
    assert list(read_manifest(run / "artifact")["representations"]) == ["table", "qr"]
    assert main([*args, "--representations", "table"]) == 2  # artifact exists, no --overwrite
    assert "already holds an artifact" in capsys.readouterr().err
