import math

import torch

from hotrec.embeddings.store import EmbeddingStore, apply_rows, coalesce
from hotrec.embeddings.table import TableEmbedding


def test_coalesce_sums_duplicates():
    rows = torch.tensor([3, 1, 3, 3, 0])
    grads = torch.arange(10, dtype=torch.float32).view(5, 2)
    unique, summed = coalesce(rows, grads)
    assert unique.tolist() == [0, 1, 3]
    assert summed.tolist() == [[8, 9], [2, 3], [0 + 4 + 6, 1 + 5 + 7]]


def test_sparse_sgd_equals_dense_sgd_on_touched_rows():
    torch.manual_seed(0)
    weight = torch.randn(20, 4)
    ids = torch.tensor([[1, 5], [5, 7], [1, 1]])  # duplicates on purpose
    target = torch.randn(3, 2, 4)
    # Reference: a dense nn.Embedding with torch.optim.SGD.
    ref = torch.nn.Embedding(20, 4)
    ref.weight.data.copy_(weight)
    opt = torch.optim.SGD(ref.parameters(), lr=0.3)
    ((ref(ids) - target) ** 2).sum().backward()
    opt.step()
    # Ours: leaf lookups, then (rows, grads) into apply_rows.
    out = weight[ids.view(-1)].view(3, 2, 4).requires_grad_(True)
    ((out - target) ** 2).sum().backward()
    mine = weight.clone()
    apply_rows(mine, None, ids.view(-1), out.grad.view(-1, 4), "sgd", 0.3, 1e-8)
    torch.testing.assert_close(mine, ref.weight.data)
    untouched = [r for r in range(20) if r not in (1, 5, 7)]
    assert torch.equal(mine[untouched], weight[untouched])


def test_rowwise_adagrad_matches_formula_over_two_steps():
    weight = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    state = torch.zeros(3)
    w, s = weight.clone(), state.clone()
    lr, eps = 0.5, 1e-8
    steps = [
        (torch.tensor([0, 2, 0]), torch.tensor([[1.0, -1.0], [2.0, 0.0], [1.0, 3.0]])),
        (torch.tensor([2]), torch.tensor([[-4.0, 2.0]])),
    ]
    for rows, grads in steps:
        apply_rows(w, s, rows, grads, "adagrad", lr, eps)
    # By hand: row 0 gets G=[2,2] once; row 2 gets [2,0] then [-4,2].
    s0 = (4 + 4) / 2
    s2a = (4 + 0) / 2
    s2b = s2a + (16 + 4) / 2
    expect_w = weight.clone()
    expect_w[0] -= lr * torch.tensor([2.0, 2.0]) / (math.sqrt(s0) + eps)
    expect_w[2] -= lr * torch.tensor([2.0, 0.0]) / (math.sqrt(s2a) + eps)
    expect_w[2] -= lr * torch.tensor([-4.0, 2.0]) / (math.sqrt(s2b) + eps)
    torch.testing.assert_close(s, torch.tensor([s0, 0.0, s2b]))
    torch.testing.assert_close(w, expect_w)


def test_store_init_bounds_per_table_and_seeded():
    a = EmbeddingStore([4, 10000], 8, generator=torch.Generator().manual_seed(1))
    b = EmbeddingStore([4, 10000], 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.weight, b.weight)
    assert a.weight[:4].abs().max() <= 0.5
    assert a.weight[4:].abs().max() <= 0.01
    assert a.weight[4:].abs().max() > 0.009


def test_table_embedding_offsets_and_step_updates_only_looked_up_rows():
    store = EmbeddingStore([3, 5], 2, optimizer="sgd", lr=1.0)
    before = store.weight.clone()
    emb = TableEmbedding(store, torch.tensor([0, 3]))
    sparse = torch.tensor([[2, 4], [0, 4]])
    out = emb(sparse)  # [2, 2, 2]
    assert torch.equal(out[0, 1], before[3 + 4])
    out.sum().backward()
    emb.step()
    changed = (store.weight != before).any(dim=1).nonzero().view(-1).tolist()
    assert changed == [0, 2, 7]
    torch.testing.assert_close(store.weight[7], before[7] - 2.0)  # looked up twice
    with torch.no_grad():
        emb(sparse)
    assert emb._pending == []
