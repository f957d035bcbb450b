"""device_only: every table on the device. The upper bound when the tables fit."""

from __future__ import annotations

import torch

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
        need = emb.store.nbytes()
        if ctx.device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(ctx.device)
            if need > HEADROOM * free:
                raise HotrecError(
                    f"device_only: the tables need {format_bytes(need)} but the GPU has "
                    f"{format_bytes(free)} free; use --schedule fae or hotline"
                )
        emb.to(ctx.device)  # store, offsets and keys
        emb.out_device = None

    def run(self, item: Prepared) -> float:
        self._expect_rows(item)
        return self._step_on_device([item.batch])

    def stats(self) -> dict:
        return {"schedule": self.name, "h2d_bytes": 0, "d2h_bytes": 0}
