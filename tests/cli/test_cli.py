"""CLI integration: prepare -> train -> eval on tiny files through main([...])."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hotrec.cli.main import main


def write_criteo_tsv(path, rows=1400, seed=0):
    """A tiny Criteo Kaggle train.txt in the real format, with a learnable label."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(rows):
        ints = rng.poisson(3, 13)
        cats = rng.zipf(1.4, 26) % 40
        label = int(cats[0] % 3 == 0) if rng.random() < 0.9 else int(rng.random() < 0.5)
        fields = [str(label)] + [str(i) if rng.random() > 0.1 else "" for i in ints]
        fields += [f"{(0x9E3779B1 * (c + 1) + t) % 2**32:08x}" for t, c in enumerate(cats)]
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prepare_train_eval_end_to_end(tmp_path, capsys):
    raw = write_criteo_tsv(tmp_path / "train.txt")
    data, run = tmp_path / "ds", tmp_path / "run"
    assert main(["prepare", "criteo-kaggle", str(raw), str(data)]) == 0
    assert main(["info", str(data)]) == 0
    out = capsys.readouterr().out
    assert "C26" in out and "top 1% share" in out
    args = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(run)]
    assert main(args + ["--epochs", "3", "--lr", "0.3", "--set", "data.batch_size=64"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["test"]["auc"] > 0.6
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "test", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert abs(metrics["auc"] - result["test"]["auc"]) < 1e-6


def test_interrupted_run_resumes_from_the_cli(tmp_path, capsys):
    from tests.conftest import write_toy_dataset

    data = write_toy_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    base = ["train", "--data", str(data), "--preset", "tiny", "--run-dir", str(run)]
    assert main(base + ["--max-steps", "5"]) == 0
    assert json.loads((run / "result.json").read_text())["stopped"] == "max_steps"
    assert main(["train", "--resume", str(run), "--max-steps", "0"]) == 0
    result = json.loads((run / "result.json").read_text())
    assert result["stopped"] == "completed" and result["epochs_done"] == 2


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "{tmp}/missing"], "missing does not exist"),
        (["train", "--data", "{tmp}"], "is not a hotrec dataset (no meta.json)"),
        (["train"], "--data DIR is required"),
        (["eval", "{tmp}/norun"], "is not a run directory"),
        (["train", "--data", "{toy}", "--set", "model.nope=1"], "unknown option model.nope"),
        (
            ["train", "--data", "{toy}", "--set", "model.bottom_mlp=[8,3]"],
            "must end with embedding_dim",
        ),
        (["prepare", "criteo-kaggle", "{tmp}/none.txt", "{tmp}/out"], "none.txt"),
        (["train", "--data", "{toy}", "--batch-size", "0"], "data.batch_size must be positive"),
        (
            ["train", "--data", "{toy}", "--set", "train.log_every=0"],
            "train.log_every must be positive",
        ),
        (
            ["train", "--data", "{toy}", "--set", "optim.sparse='adam'"],
            "optim.sparse must be one of",
        ),
        (["train", "--data", "{toy}", "--lr", "-1"], "optim.sparse_lr must be positive"),
        (["train", "--data", "{toy}", "--schedule", "fae", "--hot-budget", "lots"], "lots"),
    ],
)
def test_bad_input_is_one_line_error(tmp_path, toy_dataset, capsys, argv, message):
    argv = [a.format(tmp=tmp_path, toy=toy_dataset) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
