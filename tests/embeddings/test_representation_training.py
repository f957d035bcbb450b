"""A short training run per representation beats a constant predictor (tiny preset, toy data)."""

import json

import numpy as np
import pytest
import torch

from hotrec.cli.main import main
from hotrec.config import load_config
from hotrec.data.format import open_dataset
from hotrec.training.runs import start_run

SMALL_DHE = ("model.dhe_hashes=64",)
CASES = {
    "table": ("model.embedding='table'",),
    "dhe": ("model.embedding='dhe'", *SMALL_DHE),
    "hybrid": ("model.embedding='hybrid'", *SMALL_DHE),
    "hybrid_select": (
        "model.embedding='hybrid'",
        "model.embedding_map='dhe_min_rows=50'",
        *SMALL_DHE,
    ),
    "qr": ("model.embedding='qr'",),
}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, above all on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def constant_logloss(data) -> float:
    """Log loss of always predicting the training label rate (its entropy)."""
    rate = float(np.mean(open_dataset(data).split("train").label))
    return -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))


@pytest.mark.parametrize("case", CASES)
def test_short_training_beats_a_constant_predictor(tmp_path, toy_dataset, case):
    overrides = [f"data.path='{toy_dataset}'", "train.checkpoint_every=0", *CASES[case]]
    result = start_run(load_config("tiny", overrides), tmp_path / case).fit()
    assert result["steps"] == 18  # 2 epochs of 9 batches
    assert result["val"]["logloss"] < constant_logloss(toy_dataset)
    assert result["val"]["auc"] > 0.6
    # the ids carry most of the signal: beat the best the dense feature alone can rank
    assert result["val"]["auc"] > dense_only_auc(toy_dataset) + 0.05


def dense_only_auc(data) -> float:
    """Validation AUC of ranking by the one dense value the toy label depends on."""
    from sklearn.metrics import roc_auc_score

    val = open_dataset(data).split("val")
    return float(roc_auc_score(np.asarray(val.label), np.asarray(val.dense[:, 0])))


def test_cli_trains_dhe(tmp_path, toy_dataset):
    run = tmp_path / "run"
    argv = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--run-dir", str(run)]
    assert main([*argv, "--embedding", "dhe", "--set", "model.dhe_hashes=32"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["embedding"] == "dhe" and config["model"]["dhe_hashes"] == 32
    result = json.loads((run / "result.json").read_text())
    assert result["val"]["logloss"] < constant_logloss(toy_dataset)


def test_cli_trains_the_select_hybrid(tmp_path, toy_dataset):
    run = tmp_path / "run"
    argv = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--run-dir", str(run)]
    argv += ["--embedding", "hybrid", "--embedding-map", "dhe_min_rows=50"]
    assert main([*argv, "--set", "model.dhe_hashes=32"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["embedding_map"] == "dhe_min_rows=50"
    assert json.loads((run / "result.json").read_text())["val"]["auc"] > 0.6


def test_cli_bad_embedding_map_is_a_one_line_error(tmp_path, toy_dataset, capsys):
    argv = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--run-dir", str(tmp_path)]
    assert main([*argv, "--embedding", "hybrid", "--embedding-map", "dhe_min_rows=x"]) == 2
    err = capsys.readouterr().err.strip()
    assert "dhe_min_rows" in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--embedding", "table", "--embedding-map", "dhe_min_rows=50"], "takes none"),
        (["--representations", "table,dhe", "--embedding", "dhe"], "drop --embedding"),
    ],
)
def test_cli_refuses_options_it_would_ignore(tmp_path, toy_dataset, capsys, extra, message):
    argv = [
        "train",
        "--data",
        str(toy_dataset),
        "--preset",
        "tiny",
        "--run-dir",
        str(tmp_path / "r"),
    ]
    assert main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_result_reports_size_flops_and_lookup_latency(tmp_path, toy_dataset):
    overrides = [f"data.path='{toy_dataset}'", "train.max_steps=2", *CASES["hybrid"]]
    emb = start_run(load_config("tiny", overrides), tmp_path / "h").fit()["embedding"]
    assert emb["name"] == "hybrid" and emb["num_features"] == 8  # both vectors of 4 features
    assert emb["flops_per_lookup"] == emb["flops_per_sample"] // 4 > 0
    assert emb["lookup_ms"] > 0 and emb["lookup_batch"] > 0
