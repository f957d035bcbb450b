"""The plain table representation over the fused store (baseline placement: rows on host)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import torch
from torch import nn

from hotrec.device import Device, Readback, as_device
from hotrec.embeddings.bags import bag_rows, pool_bags
from hotrec.embeddings.keys import key_bags, keys_of
from hotrec.embeddings.store import EmbeddingStore
from hotrec.types import Bags


class TableEmbedding(nn.Module):
    """sparse [B, T] per-table ids -> [B, K, D], one row per key from the fused store.

    `keys` turns ids into per-virtual-table keys [B, K] (None: K = T, the ids themselves;
    see keys.py). Global row = keys + offsets.

    Rows are gathered where the store lives (`home`: None = host memory) and copied to
    `out_device` (a Device; None = leave them where they were gathered). In training the
    result is a leaf that requires grad; after backward, `step()` hands (rows, grads) of
    every lookup since the last step to the store's sparse optimizer.

    A schedule that computed the global rows of a batch already hands them over with
    `expect(rows)`, one flat [B*K] tensor per coming forward, so they are computed once.
    `update_filter(rows, grads)` may return the positions of the updates to apply (None:
    all); Slipstream's freeze mode holds back the updates of frozen rows through it.

    Multi-hot: forward(sparse, bags) reads every table's ids from sample-major Bags instead,
    turns them into the bags of its K virtual tables (`key_bags`, keys.py), gathers one row
    per id and pools each (sample, key) bag: the sum of its rows, divided by its length for
    the keys whose pooling is "mean" (`mean_tables`, one per key); an empty bag pools to
    zeros. A bag of one gives exactly the one-hot row, and the store sees the same rows in
    the same order, so the updates are the same too.
    """

    def __init__(
        self,
        store: EmbeddingStore,
        table_offsets: torch.Tensor,
        keys: nn.Module | None = None,
        mean_tables: list[bool] | None = None,
    ) -> None:
        super().__init__()
        self.store = store
        self.keys = keys
        self.register_buffer("offsets", torch.as_tensor(table_offsets, dtype=torch.int64))
        self.mean_tables = list(mean_tables or [False] * self.offsets.shape[0])
        self.out_device: Device | None = None  # where looked-up rows go (None: stay)
        self.home: Device | None = None  # where the store lives (None: host memory)
        self.moved_bytes = 0  # rows copied to out_device (and as many gradient bytes back)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._expected: deque[torch.Tensor] = deque()
        self._host_grads: list | None = None  # (host rows, grads) after begin_step
        self._host_event = None
        self._grads_back: Readback | None = None  # the gradients' pinned destination
        self.update_filter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None] | None
        self.update_filter = None

    @property
    def num_features(self) -> int:
        return self.offsets.shape[0]

    @property
    def table_rows(self) -> list[int]:
        """Rows of each (virtual) table."""
        return self.store.table_rows

    def global_ids(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> global rows [B, K] in the fused row space, on the host (ids in
        device memory are read back: evaluation only, training plans them ahead)."""
        if sparse.device != self.offsets.device:
            device = self.home or self.out_device
            sparse = device.to_host(sparse) if device is not None else sparse.cpu()
        return keys_of(self.keys, sparse) + self.offsets

    def place(self, device) -> None:
        """Rows stay where the store is (host); looked-up rows are copied to `device`."""
        self.out_device = as_device(device)
        self._grads_back = Readback(self.out_device)

    def move_store(self, device: Device) -> None:
        """The store (rows and optimizer state) into `device` memory; lookups stay there.
        Offsets and keys stay on the host, where the global rows are computed."""
        device.place_module(self.store)
        self.home, self.out_device = device, None

    def expect(self, rows: torch.Tensor) -> None:
        """Global rows [B*K] of the next training forward, computed by the schedule."""
        self._expected.append(rows)

    def key_bags(self, bags: Bags) -> Bags:
        """A batch's bags of the T features -> the bags of the K virtual tables it reads."""
        return key_bags(self.keys, bags)

    def bag_rows(self, keyed: Bags) -> torch.Tensor:
        """Global rows [L] of every id of sample-major key bags, on the host."""
        return bag_rows(keyed, self.offsets)

    def forward(self, sparse: torch.Tensor, bags: Bags | None = None) -> torch.Tensor:
        keyed = None if bags is None else self.key_bags(bags)
        if self.training and self._expected:
            rows = self._expected.popleft()  # [B*K] (with bags: [L]) on host
        elif keyed is not None:
            rows = self.bag_rows(keyed)  # [L]
        else:
            rows = self.global_ids(sparse).reshape(-1)  # [B*K]
        where = rows if self.home is None else self.home.upload(rows)  # the store's memory
        out = self.store.gather(where)  # [B*K, D]
        if self.out_device is not None:
            out = self.out_device.upload(out)
            if self.training:
                self.moved_bytes += out.numel() * out.element_size()
        if bags is None:
            out = out.view(sparse.shape[0], -1, out.shape[1])  # [B, K, D]
        if torch.is_grad_enabled() and self.training:
            out.requires_grad_(True)
            self._pending.append((rows, out))  # host rows
        return out if keyed is None else pool_bags(out, keyed, self.mean_tables, self._upload)

    def _upload(self, t: torch.Tensor) -> torch.Tensor:
        return (self.out_device or self.home).upload(t)

    def begin_step(self):
        """After backward: start copying the gradients bound for a host store back to host
        memory (asynchronously); the event of the last copy, or None when nothing moves.
        The caller's one host wait (after the loss read is queued) completes them."""
        if self._host_grads is not None:
            return self._host_event
        done = [(rows, out.grad) for rows, out in self._pending if out.grad is not None]
        self._pending.clear()
        self._host_grads, self._host_event = [], None
        if not done:
            return None
        rows = torch.cat([r for r, _ in done])
        grads = torch.cat([g.reshape(r.shape[0], -1) for r, g in done])
        dev = self.out_device
        if self.home is None and dev is not None and not dev.is_host:
            grads, self._host_event = self._grads_back.copy(grads)
        self._host_grads = [(rows, grads)]
        return self._host_event

    def step(self) -> None:
        """Apply the sparse optimizer to every lookup made since the last step, as one update
        (a row looked up by several forwards gets one row-wise Adagrad step, not several)."""
        if self._host_grads is None:
            event = self.begin_step()
            if event is not None:
                self.out_device.host_wait(event)
        pending, self._host_grads, self._host_event = self._host_grads, None, None
        for rows, grads in pending:
            keep = self.update_filter(rows, grads) if self.update_filter else None
            if keep is not None:
                rows = rows.index_select(0, keep)
                grads = grads.index_select(0, self._beside(keep, grads))
            if self.home is None:
                self.store.update(rows, grads)
            else:
                self.store.update(rows, grads, upload=self.home.upload)

    def _beside(self, index: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Host `index` in the memory `t` lives in (the store's device or the output's)."""
        device = self.home or self.out_device
        return index if device is None else device.beside(index, t)

    def zero_grad_pending(self) -> None:
        """Forget lookups whose gradients will never be applied (e.g. after a failed step)."""
        self._pending.clear()
        self._expected.clear()
        self._host_grads, self._host_event = None, None

    def param_bytes(self) -> int:
        """Bytes of the rows (optimizer state excluded)."""
        return self.store.weight.numel() * self.store.weight.element_size()

    def flops_per_sample(self) -> int:
        """Lookups only: no arithmetic."""
        return 0
