"""Test session set-up: offline W&B, at most 2 threads (the CI machine has 2 cores).

Tiny experiment overrides live in ``helpers.tiny_overrides``.
"""

from __future__ import annotations

import os

import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(min(2, torch.get_num_threads()))
