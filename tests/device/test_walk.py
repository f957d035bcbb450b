"""The emulated device's walk over an op's arguments and results: every tensor found, in
order, and containers rebuilt with their types (what torch.utils._pytree did before)."""

from __future__ import annotations

from collections import namedtuple

import torch

from hotrec.device.walk import map_tensors, tensors_in

Pair = namedtuple("Pair", "values indices")


def test_every_tensor_is_found_in_order_through_nested_containers():
    a, b, c, d = (torch.tensor([float(i)]) for i in range(4))
    obj = ((a, 2, [None, b]), {"out": c, "dim": 1, "more": (d,)})
    found: list[torch.Tensor] = []
    tensors_in(obj, found)
    assert [t.item() for t in found] == [0.0, 1.0, 2.0, 3.0]
    assert all(x is y for x, y in zip(found, (a, b, c, d), strict=True))


def test_map_rebuilds_each_container_with_its_type():
    t = torch.ones(2)
    obj = ([t, 3], (t, None), {"k": t, "s": "x"}, Pair(t, t), torch.Size([2, 3]), 1.5)
    out = map_tensors(lambda x: x + 1, obj)
    assert type(out) is tuple and len(out) == 6
    assert type(out[0]) is list and out[0][1] == 3 and torch.equal(out[0][0], t + 1)
    assert type(out[1]) is tuple and out[1][1] is None
    assert out[2]["s"] == "x" and torch.equal(out[2]["k"], t + 1)
    assert type(out[3]) is Pair and torch.equal(out[3].indices, t + 1)
    assert type(out[4]) is torch.Size and out[4] == torch.Size([2, 3])
    assert out[5] == 1.5
    assert torch.equal(t, torch.ones(2))  # the input is not changed
