"""Every interaction: shapes, gradients (F = T and F = 2T), and a short run that learns."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from hotrec.cli.main import main
from hotrec.config import ModelConfig, OptimConfig, load_config
from hotrec.data.format import open_dataset
from hotrec.models.builders import build_dlrm, interaction_options
from hotrec.models.cross import CrossInteraction
from hotrec.models.dlrm import DLRM
from hotrec.models.interactions import INTERACTIONS, make_interaction
from hotrec.models.mlp import mlp
from hotrec.training.runs import start_run
from hotrec.types import Schema, TableSpec

SCHEMA = Schema(("I1", "I2"), (TableSpec("C1", 10), TableSpec("C2", 4), TableSpec("C3", 6)))
T, D = 3, 8
OPTIONS = interaction_options(ModelConfig(embedding_dim=D))


def expected_width(name: str, f: int) -> int:
    return {
        "dot": D + (f + 1) * f // 2,
        "cat": (f + 1) * D,
        "cross": (f + 1) * D,
        "attention": (f + 2) * D,
        "masked_transformer": (f + 2) * D,
    }[name]


def test_the_list_names_every_interaction():
    assert INTERACTIONS == ("dot", "cat", "cross", "attention", "masked_transformer")
    with pytest.raises(ValueError, match="unknown interaction"):
        make_interaction("fm", T, D)


@pytest.mark.parametrize("name", INTERACTIONS)
@pytest.mark.parametrize("num_features", [T, 2 * T])
def test_interaction_shapes_and_gradients(name, num_features):
    torch.manual_seed(0)
    module = make_interaction(name, num_features, D, **OPTIONS)
    dense = torch.randn(5, D, requires_grad=True)
    features = torch.randn(5, num_features, D, requires_grad=True)
    out = module(dense, features)
    assert out.shape == (5, module.out_features)
    assert module.out_features == expected_width(name, num_features)
    (out * torch.randn_like(out)).sum().backward()
    assert dense.grad.abs().sum() > 0
    assert (features.grad.abs().sum(dim=(0, 2)) > 0).all()  # every feature reaches the output
    for pname, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", INTERACTIONS)
def test_interactions_mix_samples_never(name):
    torch.manual_seed(1)
    module = make_interaction(name, T, D, **OPTIONS).eval()
    dense, features = torch.randn(4, D), torch.randn(4, T, D)
    whole = module(dense, features)
    for b in range(4):
        torch.testing.assert_close(whole[b : b + 1], module(dense[b : b + 1], features[b : b + 1]))


def test_options_reach_the_modules():
    options = {**OPTIONS, "num_layers": 3, "cross_layers": 2, "cross_rank": 5}
    cross = make_interaction("cross", T, D, **options)
    assert isinstance(cross, CrossInteraction) and len(cross.layers) == 2
    assert cross.layers[0].down.out_features == 5
    # Non-default values only, so a module that ignored an option would be caught.
    mt_options = {
        **options,
        "ffn_dim": 7,
        "num_heads": 4,
        "mask_thresholds": (0.02, 0.03, 0.04, 0.07),
        "dropout": 0.3,
        "layernorm": False,
    }
    mt = make_interaction("masked_transformer", T, D, **mt_options)
    assert len(mt.blocks) == 3
    assert mt.blocks[0].ffn[0].out_features == 7
    assert mt.blocks[0].ffn[1].p == 0.3
    assert mt.blocks[0].attention.num_heads == 4 and mt.blocks[0].attention.head_dim == D // 4
    torch.testing.assert_close(
        mt.blocks[2].attention.thresholds, torch.tensor([0.02, 0.03, 0.04, 0.07])
    )
    assert not any(isinstance(m, nn.LayerNorm) for m in mt.modules())
    attention = make_interaction("attention", T, D, **{**options, "num_heads": 4})
    assert len(attention.blocks) == 3 and attention.blocks[0].attention.num_heads == 4
    assert not attention.blocks[0].attention.masked


def test_cross_layer_formula():
    torch.manual_seed(2)
    cross = CrossInteraction(1, 2, num_layers=1, rank=1)
    dense, features = torch.randn(3, 2), torch.randn(3, 1, 2)
    x0 = torch.cat([dense, features.flatten(1)], 1)
    layer = cross.layers[0]
    u, v, b = layer.up.weight, layer.down.weight, layer.up.bias
    expect = x0 * (x0 @ v.T @ u.T + b) + x0
    torch.testing.assert_close(cross(dense, features), expect)


@pytest.mark.parametrize("name", INTERACTIONS)
def test_dlrm_with_each_interaction_backpropagates(name):
    cfg = ModelConfig(embedding_dim=D, bottom_mlp=(8, D), top_mlp=(8, 1), interaction=name)
    model = build_dlrm(SCHEMA, cfg, OptimConfig(), seed=0)
    logits = model(torch.rand(6, 2), torch.tensor([[1, 2, 3]] * 6))
    assert logits.shape == (6,)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.dense_parameters())
    ((_, looked_up),) = model.embeddings._pending
    assert looked_up.grad.shape == (6, T, D)


class TwoVectorsPerFeature(nn.Module):
    """Stand-in for a hybrid representation: sparse [B, T] -> [B, 2T, D]."""

    def __init__(self, rows: int) -> None:
        super().__init__()
        self.a, self.b = nn.Embedding(rows, D), nn.Embedding(rows, D)

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.a(sparse), self.b(sparse)], dim=1)  # [B, 2T, D]


@pytest.mark.parametrize("name", INTERACTIONS)
def test_dlrm_with_two_vectors_per_feature(name):
    torch.manual_seed(3)
    interaction = make_interaction(name, 2 * T, D, **OPTIONS)
    model = DLRM(
        TwoVectorsPerFeature(10),
        mlp(2, (8, D), last_activation=True),
        interaction,
        mlp(interaction.out_features, (8, 1), last_activation=False),
    )
    logits = model(torch.rand(6, 2), torch.randint(0, 10, (6, T)))
    assert logits.shape == (6,)
    logits.sum().backward()
    assert model.embeddings.a.weight.grad.abs().sum() > 0
    assert model.embeddings.b.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", INTERACTIONS)
def test_short_training_run_beats_a_constant_predictor(tmp_path, toy_dataset, name):
    cfg = load_config(
        "tiny",
        [
            f"data.path='{toy_dataset}'",
            f"model.interaction='{name}'",
            "train.epochs=10",
            "train.checkpoint_every=0",
        ],
    )
    result = start_run(cfg, tmp_path / "run").fit()
    labels = np.asarray(open_dataset(toy_dataset).split("train").label)
    rate = float(labels.mean())
    label_entropy = -(rate * np.log(rate) + (1 - rate) * np.log(1 - rate))
    assert result["test"]["logloss"] < label_entropy
    assert result["test"]["auc"] > 0.65  # a constant predictor has 0.5


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--interaction", "attention", "--num-heads", "3"], "not divisible by model.num_heads"),
        (["--interaction", "masked_transformer", "--num-heads", "3"], "not divisible by"),
        (
            ["--interaction", "masked_transformer", "--num-heads", "4"],
            "pass --set model.mask_thresholds=[",
        ),
        (
            ["--interaction", "masked_transformer", "--set", "model.mask_thresholds=[0.001]"],
            "needs one tau per head: 2 heads, got [0.001]",
        ),
    ],
)
def test_cli_reports_bad_head_options_in_one_line(tmp_path, toy_dataset, capsys, flags, message):
    base = ["train", "--data", str(toy_dataset), "--preset", "tiny"]  # tiny: D = 8
    assert main(base + ["--run-dir", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "result.json").exists()


def test_cli_interaction_flags_reach_the_saved_config(tmp_path, toy_dataset):
    run = tmp_path / "run"
    argv = ["train", "--data", str(toy_dataset), "--preset", "tiny", "--run-dir", str(run)]
    argv += ["--interaction", "masked_transformer", "--no-layernorm", "--max-steps", "2"]
    argv += ["--set", "model.mask_thresholds=[0.002,0.004]"]
    assert main(argv) == 0
    model = json.loads((run / "config.json").read_text())["model"]
    assert model["interaction"] == "masked_transformer"
    assert model["layernorm"] is False
    assert list(model["mask_thresholds"]) == [0.002, 0.004]
    assert json.loads((run / "result.json").read_text())["stopped"] == "max_steps"
