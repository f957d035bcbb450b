"""What a schedule may use for one training run: the step context.

The trainer builds one `StepContext` and hands it to its schedule; schedules never see the
trainer. The loop keeps `step` current (optimizer steps done before the one about to run).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hotrec.config import DataConfig, PlacementConfig
from hotrec.data.format import SplitArrays
from hotrec.data.loader import BatchLoader
from hotrec.device import Device
from hotrec.distributed.group import SINGLE, Dist
from hotrec.embeddings.parts import row_part
from hotrec.training.timers import StepTimer


@dataclass
class StepContext:
    model: nn.Module  # the DLRM; schedules may replace its row part (placement)
    device: Device  # where the networks run: all host/device movement goes through it
    dense_opt: torch.optim.Optimizer  # MLPs and interaction; rows have their own row-wise rule
    timer: StepTimer
    precision: str  # "fp32" or "bf16"
    placement: PlacementConfig  # the schedule's config section
    data: DataConfig  # batch size, shuffle, prefetch
    seed: int
    train: SplitArrays  # the training split (memory maps)
    loader: BatchLoader  # the training split's batches in the baseline order
    feature_names: list[str]  # one per table of the dataset
    embedding: str  # the representation's name, for messages
    embedding_dim: int
    step: int = 0  # optimizer steps done (the loop keeps it current)
    network: nn.Module | None = None  # what the step calls forward on (DDP's wrapper of the
    # model on several ranks; None: the model)
    dist: Dist = SINGLE  # the ranks of a distributed run (one process: SINGLE)
    global_samples: int = 0  # inputs of the last step over every rank (the step keeps it)
    pad_multiple: int = 0  # > 0: each forward runs on its rows rounded up to a multiple of
    # this, zeros outside the loss (steps.padding_multiple: bf16 on the CPU)

    @property
    def rows(self) -> nn.Module | None:
        """The model's row part (the fused store and its lookups), None without rows."""
        return row_part(self.model.embeddings)

    @property
    def store(self):
        """The fused host store of embedding rows with its row-wise optimizer, or None."""
        part = self.rows
        return None if part is None else part.store
