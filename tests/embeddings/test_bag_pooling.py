"""Bag pooling: sum = the sum of one-hot lookups, mean = that over the bag's length, an empty
bag = zeros, and the row updates are those of every id (repeated ids summed)."""

from __future__ import annotations

import torch

from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.types import Bags


def test_sum_mean_and_empty_bags_and_their_updates():
    g = torch.Generator().manual_seed(0)
    store = EmbeddingStore([5, 7], 4, "sgd", lr=1.0, generator=g)
    emb = TableEmbedding(store, torch.tensor([0, 5]), mean_tables=[False, True])
    w = store.weight.clone()
    # sample 0: table 0 = [1, 2, 3], table 1 = [] ; sample 1: table 0 = [4], table 1 = [6, 0, 6]
    bags = Bags(torch.tensor([1, 2, 3, 4, 6, 0, 6]), torch.tensor([[3, 0], [1, 3]]))
    emb.train()
    out = emb(torch.zeros(2, 0, dtype=torch.int64), bags)  # [B, T, D]
    assert out.shape == (2, 2, 4)
    torch.testing.assert_close(out[0, 0], w[1] + w[2] + w[3], rtol=0, atol=1e-6)
    assert torch.equal(out[0, 1], torch.zeros(4))  # empty bag
    assert torch.equal(out[1, 0], w[4])  # a bag of one: exactly its row
    torch.testing.assert_close(out[1, 1], (w[11] + w[5] + w[11]) / 3, rtol=0, atol=1e-6)
    coef = torch.arange(16, dtype=torch.float32).reshape(2, 2, 4)
    (out * coef).sum().backward()
    emb.step()  # sgd, lr 1: w[r] -= the summed gradient of its lookups
    expect = w.clone()
    for r in (1, 2, 3):
        expect[r] -= coef[0, 0]
    expect[4] -= coef[1, 0]
    expect[11] -= 2 * coef[1, 1] / 3  # twice in a mean bag of three
    expect[5] -= coef[1, 1] / 3
    torch.testing.assert_close(store.weight, expect, rtol=0, atol=1e-6)


def test_qr_pools_quotient_and_remainder_bags_then_multiplies():
    """As the DLRM reference's QREmbeddingBag: (pooled quotient rows) * (pooled remainder
    rows) per bag, mean-pooled features averaging both; empty bags give zeros."""
    from hotrec.embeddings.qr import build_qr

    g = torch.Generator().manual_seed(0)
    qr = build_qr([10, 9], dim=3, collisions=4, generator=g, mean_tables=[False, True])
    m = qr.rows.keys.divisors.tolist()  # [3, 3]
    w, off = qr.rows.store.weight, qr.rows.offsets.tolist()  # virtual tables q0, r0, q1, r1
    bags = Bags(torch.tensor([1, 8, 5, 2, 7, 0]), torch.tensor([[2, 0], [1, 3]]))
    out = qr(torch.zeros(2, 0, dtype=torch.int64), bags)

    def pooled(ids, t, mean):
        q = sum(w[off[2 * t] + i // m[t]] for i in ids)
        r = sum(w[off[2 * t + 1] + i % m[t]] for i in ids)
        return (q / len(ids)) * (r / len(ids)) if mean else q * r

    torch.testing.assert_close(out[0, 0], pooled([1, 8], 0, False), rtol=0, atol=1e-6)
    assert torch.equal(out[0, 1], torch.zeros(3))
    torch.testing.assert_close(out[1, 0], pooled([5], 0, False), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[1, 1], pooled([2, 7, 0], 1, True), rtol=0, atol=1e-6)
