import pytest
import torch

from hotrec.config import ModelConfig, OptimConfig
from hotrec.errors import HotrecError
from hotrec.models.builders import build_dlrm
from hotrec.models.interactions import CatInteraction, DotInteraction
from hotrec.types import Schema, TableSpec

SCHEMA = Schema(("I1", "I2"), (TableSpec("C1", 10), TableSpec("C2", 4), TableSpec("C3", 6)))


def test_dot_interaction_matches_naive_pairs():
    torch.manual_seed(0)
    dense, feats = torch.randn(2, 4), torch.randn(2, 3, 4)
    out = DotInteraction(3, 4)(dense, feats)
    vecs = [dense] + [feats[:, i] for i in range(3)]
    pairs = [(vecs[i] * vecs[j]).sum(1) for i in range(4) for j in range(i)]
    expect = torch.cat([dense, torch.stack(pairs, 1)], 1)
    torch.testing.assert_close(out, expect)
    assert out.shape[1] == DotInteraction(3, 4).out_features == 4 + 6


def test_cat_interaction_shape():
    out = CatInteraction(3, 4)(torch.zeros(5, 4), torch.zeros(5, 3, 4))
    assert out.shape == (5, 16)


@pytest.mark.parametrize("interaction", ["dot", "cat"])
def test_dlrm_forward_shapes_and_gradients(interaction):
    cfg = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1), interaction=interaction)
    model = build_dlrm(SCHEMA, cfg, OptimConfig(), seed=0)
    dense = torch.rand(6, 2)
    sparse = torch.tensor([[1, 2, 3]] * 6)
    logits = model(dense, sparse)
    assert logits.shape == (6,)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.dense_parameters())
    ((_, looked_up),) = model.embeddings._pending
    assert looked_up.grad.shape == (6, 3, 4)


def test_build_is_seeded():
    cfg = ModelConfig(embedding_dim=4, bottom_mlp=(8, 4), top_mlp=(8, 1))
    a = build_dlrm(SCHEMA, cfg, OptimConfig(), seed=3).state_dict()
    b = build_dlrm(SCHEMA, cfg, OptimConfig(), seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_shapes_are_one_line_errors():
    with pytest.raises(HotrecError, match="bottom_mlp must end with embedding_dim"):
        build_dlrm(SCHEMA, ModelConfig(embedding_dim=4, bottom_mlp=(8, 5)), OptimConfig())
    with pytest.raises(HotrecError, match="top_mlp must end with 1"):
        build_dlrm(
            SCHEMA, ModelConfig(embedding_dim=4, bottom_mlp=(4,), top_mlp=(3,)), OptimConfig()
        )
