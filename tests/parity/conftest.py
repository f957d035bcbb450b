"""Parity tests run with train.deterministic on; torch's setting is process-wide, so it is
restored after each test for the rest of the suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def restore_determinism():
    before = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(before)
