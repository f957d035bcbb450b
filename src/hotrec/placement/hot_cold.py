"""Hot rows on the device: a replica of the hot rows with their optimizer state, and an
embedding module that serves each lookup from the replica (hot row) or the host store (cold).

Both sides are updated by the same `apply_rows`, so where a row lives never changes the math.
The routed embedding knows routing only: a schedule plans each forward's lookups on the host
(`plan_lookups`: global rows, slots, hot and cold positions as int64 index tensors) and hands
the plans over with `expect`; hazards, locks and filters belong to whoever needs them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hotrec.device import Readback, as_device
from hotrec.embeddings.bags import bag_rows, pool_bags
from hotrec.embeddings.keys import key_bags, keys_of
from hotrec.embeddings.store import EmbeddingStore, apply_from_host_rows
from hotrec.types import Bags


@dataclass
class Traffic:
    """Logical bytes between host and device memory (counted even when both are the CPU)."""

    h2d_bytes: int = 0
    d2h_bytes: int = 0
    syncs: int = 0


class DeviceReplica:
    """Weights [N, D] and row-wise optimizer state [N] of the hot rows, on `device`.

    rows[i] is the global id of slot i. pull() copies host -> device, push() device -> host,
    each as one vectorized gather/scatter of weights and optimizer state, through `device`
    (a Device, or a torch device).
    """

    def __init__(self, store: EmbeddingStore, rows: np.ndarray, device) -> None:
        self.store, self.device = store, as_device(device)
        self.rows = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
        n, d = self.rows.shape[0], store.dim
        self.weight = self.device.zeros(n, d, dtype=store.weight.dtype)
        adagrad = store.optimizer == "adagrad"
        self.state = self.device.zeros(n) if adagrad else None
        self.traffic = Traffic()
        self._back = (Readback(self.device), Readback(self.device))  # push's weights, state

    @property
    def nbytes(self) -> int:
        state = 0 if self.state is None else self.state.numel() * 4
        return self.weight.numel() * self.weight.element_size() + state

    def pull(self) -> None:
        """Host rows and optimizer state -> replica."""
        up = self.device.upload
        weight, state = self.store.read_rows(self.rows)  # several ranks: from the owners
        self.weight.copy_(up(weight))
        if self.state is not None:
            self.state.copy_(up(state))
        self.traffic.h2d_bytes += self.nbytes
        self.traffic.syncs += 1

    def push(self) -> None:
        """Replica rows and optimizer state -> host: both copies queued, one host wait."""
        weight, ready = self._back[0].copy(self.weight)
        state = None
        if self.state is not None:
            state, ready = self._back[1].copy(self.state)
        self.device.host_wait(ready)
        self.store.write_rows(self.rows, weight, state)
        self.traffic.d2h_bytes += self.nbytes
        self.traffic.syncs += 1

    def update(self, slots: torch.Tensor, grads: torch.Tensor) -> None:
        """Row optimizer on the replica: `slots` on the host, `grads` on the device
        (duplicates coalesced on the host, no read back)."""
        s = self.store
        apply_from_host_rows(
            self.weight, self.state, slots, grads, s.optimizer, s.lr, s.eps, self.device.upload
        )


@dataclass
class LookupPlan:
    """One forward's lookups, planned on the host before the step."""

    rows: torch.Tensor  # int64 [n] global rows
    slots: torch.Tensor | None  # int64 [n] replica slot of each lookup, -1 = cold (None: host)
    hot: torch.Tensor | None = None  # int64 [h] positions of the hot lookups (split mode)
    cold: torch.Tensor | None = None  # int64 [c] positions of the cold lookups (split mode)
    cold_index: torch.Tensor | None = None  # int64 [c] each cold lookup's row in `prefetched`


def plan_lookups(
    rows: torch.Tensor, slots: torch.Tensor, unique_cold: torch.Tensor | None = None
) -> LookupPlan:
    """Positions of hot and cold lookups; with `unique_cold` (sorted cold rows gathered ahead),
    where each cold lookup finds its row among them."""
    hot = torch.nonzero(slots >= 0).squeeze(1)
    cold = torch.nonzero(slots < 0).squeeze(1)
    index = None
    if unique_cold is not None:
        index = torch.searchsorted(unique_cold, rows.index_select(0, cold))
    return LookupPlan(rows, slots, hot, cold, index)


class RoutedEmbedding(nn.Module):
    """sparse [B, T] -> [B, T, D], each lookup served by the replica or the host store.

    mode "host":   every row from the host store (hot rows must be current there);
    mode "device": every row from the replica (every lookup must be hot);
    mode "split":  hot lookups from the replica, cold ones from the host store, or from
                   `prefetched` = (sorted unique cold rows [U], their values [U, D] on device)
                   when a look-ahead worker gathered them.
    In eval mode every row comes from the host store: the trainer syncs before evaluating.
    step() applies the row optimizer to every lookup since the last step, on the side
    (replica or host) that served it; `update_filter(rows, grads)` may return the positions
    of the updates to apply (None: all). On several ranks `share(slots, grads)` turns this
    rank's replica updates into the updates every replica applies (the same on every rank),
    and the host side is updated at every step (its store is sharded: the update is
    collective).
    """

    def __init__(
        self,
        store: EmbeddingStore,
        table_offsets: torch.Tensor,
        replica: DeviceReplica,
        slot_map: torch.Tensor,
        device,
        keys: nn.Module | None = None,
        mean_tables: list[bool] | None = None,
    ) -> None:
        super().__init__()
        self.store, self.replica, self.device = store, replica, as_device(device)
        self.keys = keys
        self.mean_tables = list(mean_tables or [False] * len(table_offsets))
        self.register_buffer("offsets", torch.as_tensor(table_offsets, dtype=torch.int64))
        self.slot_map = slot_map  # int64 [R] on host: slot of each global row, -1 = cold
        self.mode = "split"
        self.prefetched: tuple[torch.Tensor, torch.Tensor] | None = None
        self.traffic = replica.traffic
        self.update_filter: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None] | None
        self.update_filter = None
        self.share: Callable[[torch.Tensor, torch.Tensor], tuple] | None = None
        self._expected: deque[LookupPlan] = deque()
        self._pending: list[tuple[str, LookupPlan, torch.Tensor]] = []
        self._begun: tuple | None = None  # (device part, host part, event) after begin_step
        self._grads_back = Readback(self.device)

    @property
    def num_features(self) -> int:
        return self.offsets.shape[0]

    @property
    def table_rows(self) -> list[int]:
        return self.store.table_rows

    def global_ids(self, sparse: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> global rows [B, K] on host (ids in device memory are read back:
        evaluation only, training plans them ahead)."""
        if sparse.device != self.offsets.device:
            sparse = self.device.to_host(sparse)
        return keys_of(self.keys, sparse) + self.offsets

    def key_bags(self, bags: Bags) -> Bags:
        """A batch's bags of the T features -> the bags of the K virtual tables it reads."""
        return key_bags(self.keys, bags)

    def bag_rows(self, keyed: Bags) -> torch.Tensor:
        """Global rows [L] of every id of sample-major key bags, on the host."""
        return bag_rows(keyed, self.offsets)

    def slots(self, ids: torch.Tensor) -> torch.Tensor:
        """Global rows (any shape, host) -> replica slots, -1 where cold. index_select, not
        advanced indexing: it runs in the loader thread beside the training step, and the
        advanced-indexing kernel's thread team slowed fae's step by a third on 2 cores."""
        return self.slot_map.index_select(0, ids.reshape(-1)).view(ids.shape)

    def expect(self, plan: LookupPlan) -> None:
        """The plan of the next training forward, made by the schedule on the host."""
        self._expected.append(plan)

    def forward(self, sparse: torch.Tensor, bags: Bags | None = None) -> torch.Tensor:
        mode = self.mode if self.training else "host"
        keyed = None if bags is None else self.key_bags(bags)
        if self.training and self._expected:
            plan = self._expected.popleft()
        else:  # planned here: evaluation, or a caller without a schedule
            if keyed is not None:
                rows = self.bag_rows(keyed)  # [L] every id of every bag
            else:
                rows = self.global_ids(sparse).reshape(-1)  # [B*K] global ids on host
            if mode == "host":
                plan = LookupPlan(rows, None)
            elif mode == "device":
                plan = LookupPlan(rows, self.slots(rows))
            else:
                plan = plan_lookups(rows, self.slots(rows))
        if mode == "host":
            out = self._from_host(plan.rows)
        elif mode == "device":
            out = self.replica.weight.index_select(0, self.device.upload(plan.slots))
        else:
            out = self._split(plan)
        if bags is None:
            out = out.view(sparse.shape[0], -1, out.shape[1])  # [B, K, D]
        if torch.is_grad_enabled() and self.training:
            out.requires_grad_(True)
            self._pending.append((mode, plan, out))
        return out if keyed is None else pool_bags(out, keyed, self.mean_tables, self.device.upload)

    def _from_host(self, rows: torch.Tensor) -> torch.Tensor:
        out = self.store.gather(rows)
        self.traffic.h2d_bytes += out.numel() * out.element_size()
        return self.device.upload(out)

    def _split(self, plan: LookupPlan) -> torch.Tensor:
        if plan.hot is None:  # a plan made for another mode
            plan = plan_lookups(plan.rows, plan.slots)
        dev, n = self.device, plan.rows.shape[0]
        out = dev.zeros(n, self.store.dim, dtype=self.store.weight.dtype)
        hot, cold = dev.upload(plan.hot), dev.upload(plan.cold)
        hot_slots = dev.upload(plan.slots.index_select(0, plan.hot))
        out.index_copy_(0, hot, self.replica.weight.index_select(0, hot_slots))
        if self.prefetched is not None:
            unique, values = self.prefetched  # unique cold rows on host, their values on device
            index = plan.cold_index
            if index is None:
                index = torch.searchsorted(unique, plan.rows.index_select(0, plan.cold))
            out.index_copy_(0, cold, values.index_select(0, dev.upload(index)))
        else:
            out.index_copy_(0, cold, self._from_host(plan.rows.index_select(0, plan.cold)))
        return out

    def begin_step(self):
        """After backward: sort every lookup's gradient to its side, and start copying the
        host side's back to host memory (asynchronously); the event of that copy, or None.
        The caller's one host wait (after the loss read is queued) completes it."""
        if self._begun is not None:
            return self._begun[-1]
        dev = self.device
        device_rows, device_slots, device_grads, host_rows, host_grads = [], [], [], [], []
        for mode, plan, out in self._pending:
            if out.grad is None:
                continue
            grads = out.grad.reshape(-1, self.store.dim)  # [n, D]
            if mode == "host":
                host_rows.append(plan.rows)
                host_grads.append(grads)
            elif mode == "device":
                device_rows.append(plan.rows)
                device_slots.append(plan.slots)
                device_grads.append(grads)
            else:
                if plan.hot is None:
                    plan = plan_lookups(plan.rows, plan.slots)
                device_rows.append(plan.rows.index_select(0, plan.hot))
                device_slots.append(plan.slots.index_select(0, plan.hot))
                device_grads.append(grads.index_select(0, dev.upload(plan.hot)))
                host_rows.append(plan.rows.index_select(0, plan.cold))
                host_grads.append(grads.index_select(0, dev.upload(plan.cold)))
        self._pending.clear()
        device_part = None
        if device_slots:
            device_part = (torch.cat(device_rows), torch.cat(device_slots), torch.cat(device_grads))
        host_part, event = None, None
        if host_rows:
            grads = torch.cat(host_grads)
            self.traffic.d2h_bytes += grads.numel() * grads.element_size()
            if not dev.is_host:
                grads, event = self._grads_back.copy(grads)
            host_part = (torch.cat(host_rows), grads)
        self._begun = (device_part, host_part, event)
        return event

    def step(self) -> None:
        """Apply the row optimizer to every lookup made since the last step: one update per
        side over all of them, so a row looked up by several micro-batches gets one step
        (row-wise Adagrad is not additive over partial gradients)."""
        if self._begun is None:
            event = self.begin_step()
            if event is not None:
                self.device.host_wait(event)
        (device_part, host_part, _), self._begun = self._begun, None
        if self.share is not None:
            device_part, host_part = self._shared(device_part, host_part)
        if device_part is not None:
            rows, slots, grads = device_part
            slots, grads = self._filtered(rows, slots, grads)
            self.replica.update(slots, grads)
        if host_part is not None:
            rows, grads = host_part
            rows, grads = self._filtered(rows, rows, grads)
            self.store.update(rows, grads)

    def _shared(self, device_part, host_part):
        """Several ranks: every rank's replica updates, and a host part on every rank."""
        dim, dev = self.store.dim, self.device
        empty_rows = torch.zeros(0, dtype=torch.int64)
        if device_part is None:
            device_part = (empty_rows, empty_rows, dev.zeros(0, dim))
        slots, grads = self.share(device_part[1], device_part[2])
        device_part = (self.replica.rows.index_select(0, slots), slots, grads)
        if host_part is None:
            host_part = (empty_rows, torch.zeros(0, dim))
        return device_part, host_part

    def _filtered(self, rows: torch.Tensor, target: torch.Tensor, grads: torch.Tensor):
        """(target, grads) of the updates the filter keeps (all without a filter)."""
        keep = self.update_filter(rows, grads) if self.update_filter else None
        if keep is None:
            return target, grads
        return target.index_select(0, keep), grads.index_select(0, self.device.beside(keep, grads))

    def zero_grad_pending(self) -> None:
        self._pending.clear()
        self._expected.clear()
        self._begun = None
