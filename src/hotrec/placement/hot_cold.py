"""Hot rows on the device: a replica of the hot rows with their optimizer state, and an
embedding module that serves each lookup from the replica (hot row) or the host store (cold).

Both sides are updated by the same `apply_rows`, so where a row lives never changes the math.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hotrec.embeddings.keys import keys_of
from hotrec.embeddings.store import EmbeddingStore, apply_rows


@dataclass
class Traffic:
    """Logical bytes between host and device memory (counted even when both are the CPU)."""

    h2d_bytes: int = 0
    d2h_bytes: int = 0
    syncs: int = 0


class DeviceReplica:
    """Weights [N, D] and row-wise optimizer state [N] of the hot rows, on `device`.

    rows[i] is the global id of slot i. pull() copies host -> device, push() device -> host,
    each as one vectorized gather/scatter of weights and optimizer state.
    """

    def __init__(self, store: EmbeddingStore, rows: np.ndarray, device: torch.device) -> None:
        self.store, self.device = store, device
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        n, d = self.rows.shape[0], store.dim
        self.weight = torch.zeros(n, d, dtype=store.weight.dtype, device=device)
        adagrad = store.optimizer == "adagrad"
        self.state = torch.zeros(n, device=device) if adagrad else None
        self.traffic = Traffic()
        self.frozen: torch.Tensor | None = None  # bool [N]: rows not updated (slipstream freeze)
        self.frozen_grads: torch.Tensor | None = None  # [N, D] gradients the frozen rows missed

    @property
    def nbytes(self) -> int:
        state = 0 if self.state is None else self.state.numel() * 4
        return self.weight.numel() * self.weight.element_size() + state

    def pull(self) -> None:
        """Host rows and optimizer state -> replica."""
        self.weight.copy_(self.store.weight.index_select(0, self.rows))
        if self.state is not None:
            self.state.copy_(self.store.opt_state.index_select(0, self.rows))
        self.traffic.h2d_bytes += self.nbytes
        self.traffic.syncs += 1

    def push(self) -> None:
        """Replica rows and optimizer state -> host."""
        self.store.weight.index_copy_(0, self.rows, self.weight.to(self.store.weight.device))
        if self.state is not None:
            self.store.opt_state.index_copy_(0, self.rows, self.state.to(self.store.weight.device))
        self.traffic.d2h_bytes += self.nbytes
        self.traffic.syncs += 1

    def update(self, slots: torch.Tensor, grads: torch.Tensor) -> None:
        s = self.store
        if self.frozen is not None:  # frozen rows: no update, but remember what they missed
            frozen = self.frozen[slots]
            self.frozen_grads.index_add_(
                0, slots[frozen], grads[frozen].to(self.frozen_grads.dtype)
            )
            slots, grads = slots[~frozen], grads[~frozen]
        apply_rows(self.weight, self.state, slots, grads, s.optimizer, s.lr, s.eps)


class RoutedEmbedding(nn.Module):
    """sparse [B, T] -> [B, T, D], each lookup served by the replica or the host store.

    mode "host":   every row from the host store (hot rows must be current there);
    mode "device": every row from the replica (every lookup must be hot);
    mode "split":  hot lookups from the replica, cold ones from the host store, or from
                   `prefetched` = (sorted unique cold rows [U], their values [U, D] on device)
                   when a look-ahead worker gathered them.
    In eval mode every row comes from the host store: the trainer syncs before evaluating.
    step() applies the row optimizer to every lookup since the last step, on the side
    (replica or host) that served it.
    """

    def __init__(
        self,
        store: EmbeddingStore,
        table_offsets: torch.Tensor,
        replica: DeviceReplica,
        slot_map: torch.Tensor,
        device: torch.device,
        keys: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.store, self.replica, self.device = store, replica, device
        self.keys = keys
        self.register_buffer("offsets", torch.as_tensor(table_offsets, dtype=torch.int64))
        self.slot_map = slot_map  # int64 [R] on host: slot of each global row, -1 = cold
        self.mode = "split"
        self.prefetched: tuple[torch.Tensor, torch.Tensor] | None = None
        self.traffic = replica.traffic
        self.on_cold_update = None  # callback(rows) after host rows change (hotline's hazard log)
        self.host_lock = contextlib.nullcontext()  # held while host rows change (hotline's worker)
        self._pending: list[tuple] = []

    @property
    def num_features(self) -> int:
        return self.offsets.shape[0]

    @property
    def table_rows(self) -> list[int]:
        return self.store.table_rows

    def global_ids(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> global rows [B, K] on host."""
        return keys_of(self.keys, sparse.cpu()) + self.offsets

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        ids = self.global_ids(sparse)  # [B, K]
        rows = ids.reshape(-1)  # [B*K] global ids on host
        mode = self.mode if self.training else "host"
        if mode == "host":
            out = self._from_host(rows)
            record = ("host", rows)
        elif mode == "device":
            slots = self.slot_map.index_select(0, rows)
            out = self.replica.weight.index_select(0, slots.to(self.device))
            record = ("device", slots)
        else:
            out, record = self._split(rows)
        out = out.view(ids.shape[0], ids.shape[1], -1)  # [B, K, D]
        if torch.is_grad_enabled() and self.training:
            out.requires_grad_(True)
            self._pending.append((record, out))
        return out

    def _from_host(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.store.gather(rows)
        self.traffic.h2d_bytes += out.numel() * out.element_size()
        return out.to(self.device, non_blocking=True)

    def _split(self, rows: torch.Tensor) -> tuple[torch.Tensor, tuple]:
        slots = self.slot_map.index_select(0, rows)
        hot = slots >= 0
        cold_rows = rows[~hot]
        out = torch.empty(
            rows.shape[0], self.store.dim, dtype=self.store.weight.dtype, device=self.device
        )
        hot_dev = hot.to(self.device)
        out[hot_dev] = self.replica.weight.index_select(0, slots[hot].to(self.device))
        if self.prefetched is not None:
            unique, values = self.prefetched  # unique cold rows on host, their values on device
            index = torch.searchsorted(unique, cold_rows)  # both on host
            out[~hot_dev] = values.index_select(0, index.to(self.device))
        else:
            out[~hot_dev] = self._from_host(cold_rows)
        return out, ("split", rows, slots, hot)

    def step(self) -> None:
        """Apply the row optimizer to every lookup made since the last step: one update per
        side over all of them, so a row looked up by several micro-batches gets one step
        (row-wise Adagrad is not additive over partial gradients)."""
        device_slots, device_grads, host_rows, host_grads = [], [], [], []
        for record, out in self._pending:
            if out.grad is None:
                continue
            grads = out.grad.reshape(-1, self.store.dim)  # [n, D]
            if record[0] == "host":
                rows, grads = self._hold_frozen(record[1], grads)
                host_rows.append(rows)
                host_grads.append(grads)
            elif record[0] == "device":
                device_slots.append(record[1].to(self.device))
                device_grads.append(grads)
            else:
                _, rows, slots, hot = record
                hot_dev = hot.to(self.device)
                device_slots.append(slots[hot].to(self.device))
                device_grads.append(grads[hot_dev])
                host_rows.append(rows[~hot])
                host_grads.append(grads[~hot_dev])
        self._pending.clear()
        if device_slots:
            self.replica.update(torch.cat(device_slots), torch.cat(device_grads))
        if host_rows:
            self._update_host(torch.cat(host_rows), torch.cat(host_grads))

    def _hold_frozen(self, rows: torch.Tensor, grads: torch.Tensor):
        """Host-mode lookups of frozen hot rows (slipstream freeze): their gradients go to the
        replica's missed-gradient sum instead of the host rows, which stay as they are."""
        frozen = self.replica.frozen
        if frozen is None:
            return rows, grads
        slots = self.slot_map.index_select(0, rows)
        held = (slots >= 0) & frozen.cpu()[slots.clamp(min=0)]
        if not held.any():
            return rows, grads
        held_dev = held.to(grads.device)
        self.replica.frozen_grads.index_add_(0, slots[held].to(self.device), grads[held_dev])
        return rows[~held], grads[~held_dev]

    def _update_host(self, rows: torch.Tensor, grads: torch.Tensor) -> None:
        self.traffic.d2h_bytes += grads.numel() * grads.element_size()
        with self.host_lock:
            self.store.update(rows, grads)
        if self.on_cold_update is not None:
            self.on_cold_update(rows)

    def zero_grad_pending(self) -> None:
        self._pending.clear()
