"""Where each row of a fused store lives on W ranks: a registry of layouts.

  rows    row r on rank r mod W, at local row r // W: every table, its popular rows too,
          spread evenly over the ranks (the default)
  tables  whole tables on ranks, largest first to the rank holding the fewest rows so far:
          for many small tables, a table's lookups go to one rank and its rows stay
          together; one large table is not split, so a rank may hold much more than 1 / W

A layout answers, for global rows, their owner and their local row there, and moves a whole
tensor's rows to and from one rank's part (checkpoints, a start from one process's state).
"""

from __future__ import annotations

import itertools

import torch

from hotrec.errors import HotrecError


class RowLayout:
    name = "rows"

    def __init__(self, table_rows: list[int], world: int) -> None:
        self.table_rows, self.world = list(table_rows), world
        self.total = sum(table_rows)

    def owner(self, rows: torch.Tensor) -> torch.Tensor:
        return rows % self.world

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        return rows // self.world

    def count(self, rank: int) -> int:
        """Rows `rank` holds."""
        return len(range(rank, self.total, self.world))

    def take(self, whole: torch.Tensor, rank: int) -> torch.Tensor:
        """`rank`'s rows of a whole store's tensor, in local order (a copy)."""
        return whole[rank :: self.world].clone()

    def place(self, whole: torch.Tensor, rank: int, part: torch.Tensor) -> None:
        """`rank`'s rows (take's result) into a whole store's tensor."""
        whole[rank :: self.world] = part


class TableLayout(RowLayout):
    name = "tables"

    def __init__(self, table_rows: list[int], world: int) -> None:
        super().__init__(table_rows, world)
        load = [0] * world
        self.owners = [0] * len(table_rows)
        for t in sorted(range(len(table_rows)), key=lambda t: (-table_rows[t], t)):
            rank = min(range(world), key=lambda r: (load[r], r))
            self.owners[t], load[rank] = rank, load[rank] + table_rows[t]
        start, filled = [0] * len(table_rows), [0] * world  # each table's first local row
        for t, rank in enumerate(self.owners):
            start[t], filled[rank] = filled[rank], filled[rank] + table_rows[t]
        self.offsets = [0, *itertools.accumulate(table_rows)][:-1]
        self.start = start
        self._ends = torch.tensor(list(itertools.accumulate(table_rows)), dtype=torch.int64)
        self._owner = torch.tensor(self.owners, dtype=torch.int64)
        self._shift = torch.tensor([s - o for s, o in zip(start, self.offsets, strict=True)])

    def _tables(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self._ends, rows, right=True)

    def owner(self, rows: torch.Tensor) -> torch.Tensor:
        return self._owner.index_select(0, self._tables(rows))

    def local(self, rows: torch.Tensor) -> torch.Tensor:
        return rows + self._shift.index_select(0, self._tables(rows))

    def _mine(self, rank: int) -> list[int]:
        return [t for t, r in enumerate(self.owners) if r == rank]

    def count(self, rank: int) -> int:
        return sum(self.table_rows[t] for t in self._mine(rank))

    def take(self, whole: torch.Tensor, rank: int) -> torch.Tensor:
        parts = [whole[self.offsets[t] : self.offsets[t] + self.table_rows[t]]
                 for t in self._mine(rank)]  # fmt: skip
        return torch.cat(parts) if parts else whole[:0].clone()

    def place(self, whole: torch.Tensor, rank: int, part: torch.Tensor) -> None:
        for t in self._mine(rank):
            n, a = self.table_rows[t], self.start[t]
            whole[self.offsets[t] : self.offsets[t] + n] = part[a : a + n]


LAYOUTS = {layout.name: layout for layout in (RowLayout, TableLayout)}


def make_layout(name: str, table_rows: list[int], world: int) -> RowLayout:
    if name not in LAYOUTS:
        raise HotrecError(f"--dist-sharding must be one of {', '.join(LAYOUTS)}, got {name!r}")
    return LAYOUTS[name](table_rows, world)
