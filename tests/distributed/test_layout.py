"""Layouts of a sharded store: every row has one owner and one local row there, a rank's
part cut from a whole tensor and put back rebuilds it, and whole tables go largest first to
the least-loaded rank."""

from __future__ import annotations

import pytest
import torch

from hotrec.distributed.layout import RowLayout, TableLayout, make_layout
from hotrec.errors import HotrecError

TABLES = [7, 1, 30, 4, 4, 12]


def check(layout: RowLayout) -> None:
    total = sum(TABLES)
    whole = torch.arange(total * 2, dtype=torch.float32).view(total, 2)
    rows = torch.arange(total)
    owner, local = layout.owner(rows), layout.local(rows)
    rebuilt = torch.full_like(whole, -1.0)
    for r in range(layout.world):
        part = layout.take(whole, r)
        assert part.shape[0] == layout.count(r)
        mine = owner == r
        assert torch.equal(part[local[mine]], whole[mine])  # owner and local agree with take
        layout.place(rebuilt, r, part)
    assert torch.equal(rebuilt, whole)
    assert sum(layout.count(r) for r in range(layout.world)) == total


@pytest.mark.parametrize("world", [1, 2, 3, 5])
@pytest.mark.parametrize("name", ["rows", "tables"])
def test_every_row_has_one_place_and_parts_rebuild_the_whole(name, world):
    check(make_layout(name, TABLES, world))


def test_whole_tables_go_largest_first_to_the_least_loaded_rank():
    layout = TableLayout(TABLES, 2)
    # 30 -> rank 0; 12 -> 1; 7 -> 1 (19); 4 -> 1 (23); 4 -> 1 (27); 1 -> 1 (28)
    assert layout.owners == [1, 1, 0, 1, 1, 1]
    assert [layout.count(r) for r in (0, 1)] == [30, 28]
    owner = layout.owner(torch.tensor([0, 7, 8, 37, 38, 45, 57]))
    assert owner.tolist() == [1, 1, 0, 0, 1, 1, 1]


def test_negative_control_a_mismatched_local_row_is_caught():
    class Broken(TableLayout):
        def local(self, rows):  # the row layout's local rows with the table layout's owners
            return rows // self.world

    with pytest.raises(AssertionError):
        check(Broken(TABLES, 2))


def test_an_unknown_layout_is_one_line():
    with pytest.raises(HotrecError, match="must be one of rows, tables"):
        make_layout("columns", TABLES, 2)
