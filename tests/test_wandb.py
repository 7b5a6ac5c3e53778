"""W&B logging, offline: one run per experiment, holding the round metrics."""

from __future__ import annotations

import pytest
from helpers import tiny_overrides
from rich.console import Console

from alseg.config import build_loop, compose


def test_offline_wandb_run_is_written(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    cfg = compose(tiny_overrides(tmp_path, "active.rounds=2", "logger=wandb"))
    build_loop(cfg, out, resume=False, console=Console(quiet=True), progress=False).run()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # all rounds in one W&B run
    files = list(runs[0].glob("*.wandb"))
    assert files and files[0].stat().st_size > 0
    import json

    state = json.loads((out / "state.json").read_text())
    assert state["wandb_id"] in runs[0].name
