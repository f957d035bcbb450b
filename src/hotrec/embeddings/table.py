"""The plain table representation over the fused store (baseline placement: rows on host)."""

from __future__ import annotations

import torch
from torch import nn

from hotrec.embeddings.keys import keys_of
from hotrec.embeddings.store import EmbeddingStore


class TableEmbedding(nn.Module):
    """sparse [B, T] per-table ids -> [B, K, D], one row per key from the fused store.

    `keys` turns ids into per-virtual-table keys [B, K] (None: K = T, the ids themselves;
    see keys.py). Global row = keys + offsets.

    Rows are gathered where the store lives and copied to `out_device`. In training the
    result is a leaf that requires grad; after backward, `step()` hands (rows, grads) of
    every lookup since the last step to the store's sparse optimizer.
    """

    def __init__(
        self, store: EmbeddingStore, table_offsets: torch.Tensor, keys: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.keys = keys
        self.register_buffer("offsets", torch.as_tensor(table_offsets, dtype=torch.int64))
        self.out_device: torch.device | None = None  # None = the store's device
        self.moved_bytes = 0  # rows copied to out_device (and as many gradient bytes back)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def num_features(self) -> int:
        return self.offsets.shape[0]

    @property
    def table_rows(self) -> list[int]:
        """Rows of each (virtual) table."""
        return self.store.table_rows

    def global_ids(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> global rows [B, K] in the store, on the offsets' device."""
        return keys_of(self.keys, sparse.to(self.offsets.device)) + self.offsets

    def place(self, device: torch.device) -> None:
        """Rows stay where the store is (host); looked-up rows are copied to `device`."""
        self.out_device = device

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        ids = self.global_ids(sparse)  # [B, K]
        rows = ids.reshape(-1)  # [B*K]
        out = self.store.gather(rows)  # [B*T, D]
        if self.out_device is not None:
            out = out.to(self.out_device, non_blocking=True)
            if self.training:
                self.moved_bytes += out.numel() * out.element_size()
        out = out.view(ids.shape[0], ids.shape[1], -1)  # [B, K, D]
        if torch.is_grad_enabled() and self.training:
            out.requires_grad_(True)
            self._pending.append((rows, out))
        return out

    def step(self) -> None:
        """Apply the sparse optimizer to every lookup made since the last step, as one update
        (a row looked up by several forwards gets one row-wise Adagrad step, not several)."""
        done = [(rows, out.grad) for rows, out in self._pending if out.grad is not None]
        self._pending.clear()
        if done:
            rows = torch.cat([r for r, _ in done])
            grads = torch.cat([g.reshape(r.shape[0], -1) for r, g in done])
            self.store.update(rows, grads)

    def zero_grad_pending(self) -> None:
        """Forget lookups whose gradients will never be applied (e.g. after a failed step)."""
        self._pending.clear()

    def param_bytes(self) -> int:
        """Bytes of the rows (optimizer state excluded)."""
        return self.store.weight.numel() * self.store.weight.element_size()

    def flops_per_sample(self) -> int:
        """Lookups only: no arithmetic."""
        return 0
