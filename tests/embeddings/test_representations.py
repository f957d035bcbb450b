import dataclasses

import pytest
import torch

from hotrec.config import load_config
from hotrec.embeddings.describe import describe
from hotrec.embeddings.parts import row_part
from hotrec.errors import HotrecError
from hotrec.models.builders import build_dlrm
from hotrec.models.representations import REPRESENTATIONS, build_embeddings
from hotrec.types import Schema, TableSpec

SCHEMA = Schema(("I1", "I2"), tuple(TableSpec(f"C{t + 1}", n) for t, n in enumerate([40, 900, 6])))
SMALL_DHE = ["model.dhe_hashes=16", "model.dhe_hidden=[8]"]


def config(embedding: str, *extra: str):
    return load_config("tiny", [f"model.embedding='{embedding}'", *SMALL_DHE, *extra])


def batch(n: int = 5):
    dense = torch.rand(n, 2)
    sparse = torch.stack([torch.randint(0, r, (n,)) for r in SCHEMA.table_rows], dim=1)
    return dense, sparse


@pytest.mark.parametrize(
    "embedding, features", [("table", 3), ("dhe", 3), ("qr", 3), ("hybrid", 6)]
)
def test_every_representation_gives_b_f_d_and_trains(embedding, features):
    cfg = config(embedding)
    model = build_dlrm(SCHEMA, cfg.model, cfg.optim, seed=0)
    dense, sparse = batch()
    assert model.embeddings.num_features == features
    assert model.embeddings(sparse).shape == (5, features, 8)
    logits = model(dense, sparse)
    assert logits.shape == (5,)
    logits.sum().backward()
    part = row_part(model.embeddings)
    assert (part is None) == (embedding == "dhe")
    before = part.store.weight.clone() if part is not None else None
    model.embeddings.step()
    if part is not None:  # rows got their sparse step
        assert not torch.equal(part.store.weight, before)
    if embedding in ("dhe", "hybrid"):  # the decoder is trained by the dense optimizer
        decoder = [p for n, p in model.named_parameters() if "decoder" in n]
        assert decoder and all(p.grad is not None for p in decoder)
        assert {id(p) for p in decoder} <= {id(p) for p in model.dense_parameters()}


@pytest.mark.parametrize("embedding", REPRESENTATIONS)
def test_state_dict_round_trip_gives_identical_outputs(embedding):
    cfg = config(embedding, "model.dhe_batchnorm=true")
    a = build_dlrm(SCHEMA, cfg.model, cfg.optim, seed=0)
    b = build_dlrm(SCHEMA, cfg.model, cfg.optim, seed=1)
    dense, sparse = batch(8)
    a.eval()
    b.eval()
    assert not torch.equal(a(dense, sparse), b(dense, sparse))
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(dense, sparse), b(dense, sparse))


def test_table_builder_keeps_the_reference_initialization():
    cfg = config("table")
    emb = build_embeddings(SCHEMA, cfg.model, cfg.optim, torch.Generator().manual_seed(0))
    assert emb.keys is None and emb.offsets.tolist() == SCHEMA.table_offsets.tolist()
    assert emb.store.optimizer == "sgd" and emb.store.lr == cfg.optim.sparse_lr


def test_describe_trades_memory_for_flops():
    def info(name, *extra):
        cfg = config(name, *extra)
        gen = torch.Generator().manual_seed(0)
        return describe(build_embeddings(SCHEMA, cfg.model, cfg.optim, gen))

    table, dhe, qr, hybrid = (info(n) for n in ("table", "dhe", "qr", "hybrid"))
    assert table == {
        "name": "table",
        "num_features": 3,
        "param_bytes": 946 * 8 * 4,
        "flops_per_sample": 0,
        "flops_per_lookup": 0,
    }
    assert dhe["flops_per_sample"] == 3 * 2 * (16 * 8 + 8 * 8)
    assert qr["param_bytes"] < table["param_bytes"] / 2 and qr["flops_per_sample"] == 3 * 8
    assert hybrid["param_bytes"] == table["param_bytes"] + dhe["param_bytes"]
    big = info("dhe", "model.dhe_hashes=1024", "model.dhe_hidden=[128]")
    assert big["param_bytes"] == 3 * 4 * (1024 * 128 + 128 + 128 * 8 + 8) + 3 * 1024 * 2 * 8


def test_unknown_representation_is_a_hotrec_error():
    cfg = config("table")
    bad = dataclasses.replace(cfg.model, embedding="lsh")
    with pytest.raises(HotrecError, match="unknown embedding representation"):
        build_embeddings(SCHEMA, bad, cfg.optim, torch.Generator())
