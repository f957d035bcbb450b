"""A schedule written the way docs/architecture.md says: one module, one registry line.

`Halves` trains each mini-batch as two micro-batches on the device (rows stay on host): the
mean loss over the whole batch keeps the gradient of the baseline's single pass."""

from __future__ import annotations

from hotrec.training.schedules.base import Prepared, Schedule
from hotrec.types import Batch


class Halves(Schedule):
    name = "halves"

    def attach(self, ctx) -> None:
        super().attach(ctx)
        ctx.model.embeddings.place(ctx.device)  # rows on host, looked up for the device
        self.micro_batches = 0

    def run(self, item: Prepared) -> float:
        b, half, parts = item.batch, len(item) // 2, []
        for i, j in ((0, half), (half, len(b))):
            if j > i:
                parts.append(Batch(b.dense[i:j], b.sparse[i:j], b.label[i:j]))
                self.ctx.rows.expect(item.ids[i:j].reshape(-1))  # rows from prepare
        self.micro_batches += len(parts)
        return self._step_on_device(parts)

    def stats(self) -> dict:
        return {"schedule": self.name, "micro_batches": self.micro_batches}
