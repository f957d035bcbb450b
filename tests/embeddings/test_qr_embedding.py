import torch

from hotrec.embeddings.keys import qr_tables
from hotrec.embeddings.parts import row_part
from hotrec.embeddings.qr import build_qr


def test_each_vector_is_quotient_row_times_remainder_row():
    qr = build_qr([10, 7], dim=3, collisions=4, generator=torch.Generator().manual_seed(0))
    divisors, rows = qr_tables([10, 7], 4)  # m = [3, 2]; tables [q0=4, r0=3, q1=4, r1=2]
    assert rows == [4, 3, 4, 2]
    ids = torch.tensor([[0, 6], [9, 5], [4, 1]])
    out = qr(ids)
    assert out.shape == (3, 2, 3) and qr.num_features == 2
    w, offsets = qr.rows.store.weight, [0, 4, 7, 11]
    for b in range(3):
        for t in range(2):
            x, m = int(ids[b, t]), divisors[t]
            q, r = w[offsets[2 * t] + x // m], w[offsets[2 * t + 1] + x % m]
            torch.testing.assert_close(out[b, t], q * r)


def test_quotient_rows_start_near_one_so_products_have_table_scale():
    qr = build_qr([400], dim=8, collisions=4, generator=torch.Generator().manual_seed(0))
    w = qr.rows.store.weight
    quotient, remainder = w[:4], w[4:]  # n_q = 4, n_r = 100
    assert float((quotient - 1).abs().max()) <= 0.5
    assert float(remainder.abs().max()) <= 0.1
    # ids sharing a remainder row differ through their quotient rows
    out = qr(torch.tensor([[3], [103]]))
    assert not torch.allclose(out[0], out[1])


def test_step_updates_only_the_looked_up_rows_of_both_tables():
    qr = build_qr([10, 7], dim=3, collisions=4, lr=0.5, generator=torch.Generator().manual_seed(0))
    before = qr.rows.store.weight.clone()
    qr(torch.tensor([[9, 5]])).sum().backward()
    qr.step()
    changed = (qr.rows.store.weight != before).any(1).nonzero().flatten().tolist()
    assert changed == [3, 4 + 0, 7 + 2, 11 + 1]  # q0[3], r0[0], q1[2], r1[1]
    assert row_part(qr) is qr.rows
    assert qr.param_bytes() == 13 * 3 * 4 and qr.flops_per_sample() == 2 * 3


def test_qr_uses_fewer_rows_than_the_table():
    qr = build_qr([100_000, 50], dim=4, collisions=4)
    assert qr.rows.store.num_rows < (100_000 + 50) / 3
