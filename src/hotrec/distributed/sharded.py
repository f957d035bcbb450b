"""The sharded embedding store: each global row of the fused store lives on one rank, with its
optimizer state, where the layout says (distributed/layout.py: row r on rank r mod W by
default, or whole tables on ranks).

It keeps the store's contract (`gather(rows)`, `update(rows, grads)`), so the row parts
(TableEmbedding, and through it qr and the hybrid's table part) work unchanged:

  gather: ids to their owners (all-to-all), owners gather, rows back (all-to-all)
  update: (ids, gradients) to their owners (all-to-all); each owner applies the row-wise
          optimizer once per row, to the sum of its gradients over every rank

Each rank sends its lookups in its batch order and the ranks hold consecutive parts of the
global batch, so an owner receives its rows' gradients in the global batch's order: the
update one process would make (SGD and row-wise Adagrad alike; float sums may round
differently in the last bit). Checkpoints keep each rank's rows as its own shard
(distributed/checkpoints.py); `shard_state` cuts a whole store, so a run resumes with any
world size.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch
from torch import nn

from hotrec.distributed.group import Dist
from hotrec.distributed.layout import make_layout
from hotrec.embeddings.store import EmbeddingStore, apply_rows


@dataclass
class Traffic:
    """What this rank sent to other ranks in training steps, in bytes by kind, and the
    seconds its row exchanges took (inside the time split's embedding and optimizer
    sections); evaluation's gathers are not counted."""

    ids: int = 0  # row ids: to the owners, for gathers and for updates
    rows: int = 0  # row values: from the owners back to the askers
    gradients: int = 0  # row gradients: to the owners
    dense: int = 0  # the networks' gradients DDP all-reduces (its payload; a ring all-reduce
    # sends 2 (W - 1) / W of it per rank)
    hot: int = 0  # the hot-row replica's updates (slots and gradients) sent to every other
    # rank (fae, hotline), so every replica applies the same update
    seconds: float = 0.0

    KINDS = ("ids", "rows", "gradients", "dense", "hot")

    def as_tensor(self) -> torch.Tensor:
        return torch.tensor(
            [*(getattr(self, k) for k in self.KINDS), self.seconds], dtype=torch.float64
        )


class ShardedStore(nn.Module):
    """This rank's rows (weight [n_local, D], opt_state [n_local] for Adagrad) of a fused
    store of `table_rows`; gather/update exchange ids, rows and gradients with the owners."""

    def __init__(
        self,
        full: EmbeddingStore,
        dist: Dist,
        traffic: Traffic | None = None,
        layout: str = "rows",
    ) -> None:
        super().__init__()
        self.table_rows = list(full.table_rows)
        self.dim, self.optimizer, self.lr, self.eps = full.dim, full.optimizer, full.lr, full.eps
        self.dist = dist
        self.total_rows = full.num_rows
        self.layout = make_layout(layout, self.table_rows, dist.world)
        self.register_buffer("weight", self.layout.take(full.weight, dist.rank))
        adagrad = full.optimizer == "adagrad"
        state = self.layout.take(full.opt_state, dist.rank) if adagrad else torch.zeros(0)
        self.register_buffer("opt_state", state)
        self.lock = threading.Lock()
        self.traffic = traffic or Traffic()

    @property
    def num_rows(self) -> int:
        return self.total_rows

    def route(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(positions of `rows` grouped by owner, in order within each; counts [W])."""
        owner = self.layout.owner(rows)
        order = torch.argsort(owner, stable=True)
        return order, torch.bincount(owner, minlength=self.dist.world)

    def _others(self, counts: torch.Tensor) -> int:
        """Rows of `counts` [W] bound for other ranks (the own part is a local copy)."""
        return int(counts.sum() - counts[self.dist.rank])

    def _fetch(
        self, rows: torch.Tensor, values_of
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ask the owners of global rows [n] (host) for `values_of(local rows)` [m, ...]:
        (the values in the order of `rows`, counts sent to each rank, counts asked of me)."""
        order, counts = self.route(rows)
        asked, asked_counts = self.dist.exchange(self.layout.local(rows[order]), counts)
        values, _ = self.dist.exchange(values_of(asked), asked_counts)
        out = torch.empty_like(values)
        out[order] = values  # back in the order of `rows`
        return out, counts, asked_counts

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Global rows [n] (host) -> their values [n, D], wherever they live."""
        t, start = self.traffic, time.perf_counter()
        out, counts, asked_counts = self._fetch(rows, lambda a: self.weight.index_select(0, a))
        if torch.is_grad_enabled():  # a training step's (evaluation runs without autograd)
            t.ids += self._others(counts) * rows.element_size()
            t.rows += self._others(asked_counts) * self.dim * self.weight.element_size()
            t.seconds += time.perf_counter() - start
        return out

    def read_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rows [n] global ids -> (weights [n, D], Adagrad state [n] or None) from their
        owners (collective: every rank calls it with its own rows; not counted as training
        traffic: a replica's pull, a Slipstream snapshot)."""
        if self.optimizer != "adagrad":
            return self._fetch(rows, lambda a: self.weight.index_select(0, a))[0], None

        def with_state(asked: torch.Tensor) -> torch.Tensor:  # the state as one more column
            state = self.opt_state.index_select(0, asked).unsqueeze(1)
            return torch.cat([self.weight.index_select(0, asked), state], 1)

        out = self._fetch(rows, with_state)[0]
        return out[:, : self.dim].contiguous(), out[:, self.dim].contiguous()

    def write_rows(
        self, rows: torch.Tensor, weight: torch.Tensor, state: torch.Tensor | None
    ) -> None:
        """Overwrite global rows [n] with weights [n, D] (and state [n]); every rank holds
        the same values (a replica), so each keeps the rows it owns: no communication."""
        mine = torch.nonzero(self.layout.owner(rows) == self.dist.rank).squeeze(1)
        local = self.layout.local(rows.index_select(0, mine))
        self.weight.index_copy_(0, local, weight.index_select(0, mine))
        if state is not None:
            self.opt_state.index_copy_(0, local, state.index_select(0, mine))

    def update(self, rows: torch.Tensor, grads: torch.Tensor, upload=None) -> None:
        """Per-lookup gradients (host) to the owners, who apply the row-wise optimizer."""
        t, start = self.traffic, time.perf_counter()
        order, counts = self.route(rows)
        mine, _ = self.dist.exchange(self.layout.local(rows[order]), counts)
        summed, _ = self.dist.exchange(grads[order], counts)
        t.ids += self._others(counts) * rows.element_size()
        t.gradients += self._others(counts) * self.dim * grads.element_size()
        t.seconds += time.perf_counter() - start
        state = self.opt_state if self.optimizer == "adagrad" else None
        with self.lock:
            apply_rows(self.weight, state, mine, summed, self.optimizer, self.lr, self.eps)

    def nbytes(self) -> int:
        return self.weight.numel() * self.weight.element_size() + self.opt_state.numel() * 4


def shard_stores(model: nn.Module, dist: Dist, traffic: Traffic, layout: str = "rows") -> list[str]:
    """Replace every EmbeddingStore of `model` by this rank's ShardedStore in `layout`
    (counting into `traffic`); their names."""
    names = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, EmbeddingStore):
                setattr(module, child_name, ShardedStore(child, dist, traffic, layout))
                names.append(f"{name}.{child_name}" if name else child_name)
    return names


def stores(model: nn.Module) -> dict[str, ShardedStore]:
    return {n: m for n, m in model.named_modules() if isinstance(m, ShardedStore)}


def without_stores(model: nn.Module, state: dict) -> dict:
    """A state_dict of `model` without its sharded stores' tensors (saved as shards)."""
    names = {f"{n}.{key}" for n in stores(model) for key in ("weight", "opt_state")}
    return {k: v for k, v in state.items() if k not in names}


def shard_state(model: nn.Module, state: dict) -> dict:
    """A checkpoint's state_dict with every sharded store cut to this rank's rows: a whole
    store (of one process, or read from the shards of another world size) is cut; this
    rank's own part (shards of the same world size) is taken as it is."""
    out = dict(state)
    for name, store in stores(model).items():
        d = store.dist
        for key in ("weight", "opt_state"):
            full = state[f"{name}.{key}"]
            if full.numel() and full.shape[0] == store.total_rows:
                full = store.layout.take(full, d.rank)
            out[f"{name}.{key}"] = full
    return out
