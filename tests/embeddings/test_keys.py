"""Row keys: selected columns, quotient-remainder pairs, and their table sizes."""

from __future__ import annotations

import numpy as np
import torch

from hotrec.embeddings.keys import QRKeys, SelectKeys, qr_tables
from hotrec.embeddings.parts import numpy_keys, row_part
from hotrec.embeddings.store import EmbeddingStore
from hotrec.embeddings.table import TableEmbedding
from hotrec.types import Bags


def test_select_keys_picks_columns_in_order():
    sparse = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert SelectKeys([2, 0])(sparse).tolist() == [[3, 1], [6, 4]]


def test_qr_keys_cover_every_id_with_a_unique_pair():
    rows = [10, 7, 1]
    divisors, virtual = qr_tables(rows, collisions=3)
    assert divisors == [4, 3, 1]
    assert virtual == [3, 4, 3, 3, 1, 1]  # [q_0, r_0, q_1, r_1, q_2, r_2]
    ids = torch.tensor([[x, min(x, 6), 0] for x in range(10)])  # every id of table 0
    keys = QRKeys([0, 1, 2], divisors)(ids)  # [10, 6]
    assert keys.shape == (10, 6)
    for t in range(3):
        q, r = keys[:, 2 * t], keys[:, 2 * t + 1]
        assert (q < virtual[2 * t]).all() and (r < virtual[2 * t + 1]).all()
        assert torch.equal(q * divisors[t] + r, ids[:, t])  # the pair determines the id
    pairs = {(int(a), int(b)) for a, b in zip(keys[:, 0], keys[:, 1], strict=True)}
    assert len(pairs) == 10


def test_keyed_table_reads_the_keyed_rows():
    divisors, virtual = qr_tables([10, 7], collisions=3)
    store = EmbeddingStore(virtual, 4, generator=torch.Generator().manual_seed(0))
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(virtual)[:-1]]))
    emb = TableEmbedding(store, offsets, QRKeys([0, 1], divisors))
    sparse = torch.tensor([[9, 6], [0, 1]])
    out = emb(sparse)  # [2, 4, 4]
    assert out.shape == (2, 4, 4)
    expected = store.weight[emb.global_ids(sparse).reshape(-1)].view(2, 4, 4)
    assert torch.equal(out, expected)
    assert row_part(emb) is emb
    assert np.array_equal(numpy_keys(emb)(sparse.numpy()), emb.keys(sparse).numpy())


def test_key_bags_brute_force():
    """select_bags and QRKeys.bags give, per sample and virtual table, the source feature's
    bag (QR: each id's quotient, then each id's remainder), sample-major; empty bags stay."""
    rng = np.random.default_rng(0)
    lengths = torch.as_tensor(rng.integers(0, 4, size=(6, 3)))  # some bags empty
    values = torch.as_tensor(rng.integers(0, 50, size=int(lengths.sum())))
    bags = Bags(values, lengths)
    per = []  # per[b][t]: the ids of bag (b, t)
    at = 0
    for row in lengths.tolist():
        per.append([values[at + sum(row[:t]) : at + sum(row[: t + 1])].tolist() for t in range(3)])
        at += sum(row)

    def flatten(expected):  # [b][k] lists -> Bags
        lens = torch.as_tensor([[len(bag) for bag in row] for row in expected])
        flat = [i for row in expected for bag in row for i in bag]
        return torch.as_tensor(flat, dtype=torch.int64), lens

    sel = SelectKeys([2, 0]).bags(bags)
    want_values, want_lengths = flatten([[row[2], row[0]] for row in per])
    assert torch.equal(sel.values, want_values) and torch.equal(sel.lengths, want_lengths)
    divisors = [7, 4]
    qr = QRKeys([0, 2], divisors).bags(bags)
    expected = [
        [[i // m for i in row[c]] if q == 0 else [i % m for i in row[c]]
         for c, m in zip([0, 2], divisors, strict=True) for q in (0, 1)]
        for row in per
    ]  # fmt: skip
    want_values, want_lengths = flatten(expected)
    assert torch.equal(qr.values, want_values) and torch.equal(qr.lengths, want_lengths)
    # a bag of one per feature: the one-hot keys, in the same order
    one = Bags(torch.tensor([3, 9, 20, 11, 1, 8]), torch.ones(2, 3, dtype=torch.int64))
    sparse = one.values.view(2, 3)
    assert torch.equal(
        QRKeys([0, 2], divisors).bags(one).values, QRKeys([0, 2], divisors)(sparse).reshape(-1)
    )
