"""Shared fixtures: tiny synthetic experiments that run in seconds on a CPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from helpers import tiny_overrides

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny(tmp_path: Path):
    return lambda *extra: tiny_overrides(tmp_path, *extra)
