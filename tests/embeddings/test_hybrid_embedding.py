import numpy as np
import torch

from hotrec.config import load_config
from hotrec.embeddings.describe import describe
from hotrec.embeddings.keys import SelectKeys
from hotrec.embeddings.parts import row_part, set_row_part
from hotrec.models.representations import build_embeddings
from hotrec.types import Schema, TableSpec

SCHEMA = Schema(("I1",), tuple(TableSpec(f"C{t + 1}", n) for t, n in enumerate([30, 500, 8])))


def hybrid(embedding_map: str = ""):
    cfg = load_config(
        "tiny",
        [
            "model.embedding='hybrid'",
            f"model.embedding_map='{embedding_map}'",
            "model.dhe_hashes=16",
            "model.dhe_hidden=[8]",
        ],
    )
    return build_embeddings(SCHEMA, cfg.model, cfg.optim, torch.Generator().manual_seed(0))


def ids(n: int = 6) -> torch.Tensor:
    return torch.stack([torch.randint(0, r, (n,)) for r in SCHEMA.table_rows], dim=1)


def test_full_form_gives_table_then_dhe_vector_of_every_feature():
    emb, sparse = hybrid(), ids()
    out = emb(sparse)
    assert out.shape == (6, 6, 8) and emb.num_features == 6
    assert emb.rows.keys is None  # the table covers every column in order
    torch.testing.assert_close(out[:, :3], emb.rows(sparse))
    torch.testing.assert_close(out[:, 3:], emb.dhe(sparse))


def test_select_form_follows_the_map():
    emb, sparse = hybrid("dhe_min_rows=100"), ids()  # C2 -> dhe, C1 and C3 -> table
    assert emb.table_columns == [0, 2] and emb.dhe_columns.tolist() == [1]
    assert isinstance(emb.rows.keys, SelectKeys) and emb.rows.store.table_rows == [30, 8]
    out = emb(sparse)
    assert out.shape == (6, 3, 8) and emb.num_features == 3
    torch.testing.assert_close(out[:, 2], emb.dhe(sparse[:, 1:2])[:, 0])
    assert hybrid("dhe").rows is None and hybrid("table").dhe is None
    assert row_part(hybrid("dhe")) is None


def test_gradients_reach_rows_and_decoder():
    emb = hybrid()
    before = emb.rows.store.weight.clone()
    emb(ids()).pow(2).sum().backward()
    emb.step()
    assert not torch.equal(emb.rows.store.weight, before)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in emb.dhe.parameters())


def test_row_part_can_be_replaced_and_is_called_at_forward_time():
    class Model(torch.nn.Module):
        def __init__(self, embeddings):
            super().__init__()
            self.embeddings = embeddings

    model = Model(hybrid("dhe_min_rows=100"))
    calls = []
    old = row_part(model.embeddings)
    old.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    set_row_part(model, old)
    model.embeddings(ids())
    assert calls == [(6, 2, 8)]


def test_cost_is_the_sum_of_both_parts():
    emb = hybrid()
    d = describe(emb)
    assert d["name"] == "hybrid" and d["num_features"] == 6
    assert d["param_bytes"] == describe(emb.rows)["param_bytes"] + describe(emb.dhe)["param_bytes"]
    assert d["flops_per_sample"] == describe(emb.dhe)["flops_per_sample"] > 0
    assert describe(emb.rows) == {
        "name": "table",
        "num_features": 3,
        "param_bytes": 538 * 8 * 4,
        "flops_per_sample": 0,
        "flops_per_lookup": 0,
    }


def test_hybrid_cache_uses_the_dhe_columns():
    emb = hybrid("dhe_min_rows=100").eval()
    cache = emb.build_cache([np.array([1]), np.array([2, 3]), np.array([4])])
    assert cache.sizes == [2]
    sparse = ids(50)
    with torch.no_grad():
        out = emb(sparse)
        ref = emb.dhe.decode(sparse[:, 1:2].t()).transpose(0, 1)  # [B, 1, D]
    torch.testing.assert_close(out[:, 2:], ref, atol=1e-6, rtol=0)
    assert emb.dhe.cache_stats()["hits"] == int(np.isin(sparse[:, 1], [2, 3]).sum())
