"""W&B logging, offline: one run per experiment holding the round metrics, the selections
table and the labels artifact, with the same numbers as the run dir."""

from __future__ import annotations

import csv
import json

import pytest
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose
from alseg.wandb_offline import artifacts, history


def test_offline_wandb_run_holds_metrics_table_and_artifact(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    cfg = compose(tiny_overrides(tmp_path, "active.rounds=2", "logger=wandb"))
    build_loop(cfg, out, resume=False, console=Console(quiet=True), progress=False).run()
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # all rounds in one W&B run
    state = json.loads((out / "state.json").read_text())
    assert state["wandb_id"] in runs[0].name
    log = next(runs[0].glob("*.wandb"))

    rows = history(log)
    rounds = [r for r in rows if "al/mIoU" in r]
    with (out / "metrics.csv").open() as f:
        metrics = list(csv.DictReader(f))
    assert [r["al/round"] for r in rounds] == [0, 1]
    for logged, saved in zip(rounds, metrics):
        assert logged["al/mIoU"] == pytest.approx(float(saved["mIoU"]))
        assert logged["al/clicks"] == pytest.approx(float(saved["clicks"]))
        assert logged["al/IoU_road"] == pytest.approx(float(saved["IoU_road"]))

    tables = [r for r in rows if "selections/table/nrows" in r]  # nested keys are joined
    assert [t["selections/table/nrows"] for t in tables] == [8, 8]  # one row per query
    assert [t["selections/table/ncols"] for t in tables] == [6, 6]
    assert all(t["selections/overlays/count"] >= 1 for t in tables)

    arts = [a for a in artifacts(log) if a["type"] == "labels"]
    assert [a["metadata"]["round"] for a in arts] == [0, 1]
    assert "round-1" in arts[1]["aliases"]
    assert sorted(arts[0]["files"]) == ["round_00.csv", "round_00.npz"]
    assert arts[1]["metadata"]["clicks"] == pytest.approx(float(metrics[1]["clicks"]))


def test_wandb_gets_no_anonymous_setting(tmp_path, monkeypatch):
    """Lightning passes anonymous=None, on which W&B warns that the setting has no effect:
    a warning a user cannot act on, so the logger leaves the setting out."""
    pytest.importorskip("wandb")
    from alseg.build import build_logger
    from alseg.rundir import RunDir

    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(tiny_overrides(tmp_path, "logger=wandb"))
    logger = build_logger(cfg, RunDir(tmp_path / "run"), {})
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["group"]
