"""device_only: every table on the device. The upper bound when the tables fit."""

from __future__ import annotations

from hotrec.errors import HotrecError
from hotrec.placement.bytesize import format_bytes
from hotrec.training.context import StepContext
from hotrec.training.schedules.base import Prepared, Schedule

HEADROOM = 0.85  # share of free device memory the tables may take (the rest: MLPs, activations)


class DeviceOnly(Schedule):
    name = "device_only"

    def attach(self, ctx: StepContext) -> None:
        super().attach(ctx)
        emb = ctx.rows
        if emb is None:  # no rows (dhe): everything already runs on the device
            return
        need, free = emb.store.nbytes(), ctx.device.memory_free()
        if free is not None and need > HEADROOM * free:
            raise HotrecError(
                f"device_only: the tables need {format_bytes(need)} but the device has "
                f"{format_bytes(free)} free; use --schedule fae or hotline"
            )
        emb.move_store(ctx.device)  # rows and optimizer state; global rows stay host work

    def run(self, item: Prepared) -> float:
        self._expect_rows(item)
        return self._step_on_device([item.batch])

    def stats(self) -> dict:
        return {"schedule": self.name, "h2d_bytes": 0, "d2h_bytes": 0}
