"""`alseg run` on 2 CPU processes (DDP, gloo) completes and resumes."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import rewind, tiny_overrides

pytestmark = pytest.mark.ddp

ALSEG = [sys.executable, "-m", "alseg.cli"]


def alseg(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    for var in ("RANK", "LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "ALSEG_RUN_DIR"):
        env.pop(var, None)
    return subprocess.run([*ALSEG, *args], env=env, capture_output=True, text=True, timeout=timeout)


DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]


def ddp_run(tmp_path: Path, name: str, *extra: str, timeout: int = 600) -> tuple[Path, list[dict]]:
    """A 2-round tiny run on 2 processes: its run dir and metrics rows."""
    out = tmp_path / name
    overrides = tiny_overrides(tmp_path, "active.rounds=2", "data.num_test=7", *extra, *DDP)
    res = alseg("run", *overrides, f"run_dir={out}", timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    with (out / "metrics.csv").open() as f:
        return out, list(csv.DictReader(f))


def resumes_alike(out: Path, tmp_path: Path) -> Path:
    """A copy of ``out`` killed after round 1's fit resumes under DDP to the same
    metrics.csv; returns the copy."""
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    rewind(killed, 1, "fitted", metrics_rows=1)
    res = alseg("resume", str(killed))
    assert res.returncode == 0, res.stderr[-3000:]
    assert (killed / "metrics.csv").read_text() == (out / "metrics.csv").read_text()
    return killed


def test_ddp_run_completes_and_resumes(tmp_path: Path):
    out, rows = ddp_run(tmp_path, "ddp", "data.num_val=5")
    assert [r["round"] for r in rows] == ["0", "1"]
    # the second rank wrote nothing of its own: one W&B-free run dir, no stray folders
    assert sorted(p.name for p in out.iterdir()) == [
        ".lock",  # the writer's lock (rank 0 only)
        "checkpoints",
        "config.yaml",
        "curve.png",
        "histograms",
        "labels",
        "metrics.csv",
        "overlays",
        "selections",
        "state.json",
    ]
    # a run killed after round 1's fit resumes under DDP to the same learning curve
    killed = resumes_alike(out, tmp_path)
    assert json.loads((killed / "state.json").read_text())["phase"] == "done"


def test_ddp_fit_where_each_rank_holds_less_than_a_batch(tmp_path: Path):
    """More labeled images than a batch (4), but less than a batch per rank: every rank must
    still train on its images. Deciding drop_last on the global count left both ranks
    without a batch: the fit trained nothing (and a step-limited one of the continuous
    schedule never ended)."""
    import pytorch_lightning as pl
    import torch
    from rich.console import Console

    from alseg.build import build_loop
    from alseg.config import load_run_config
    from alseg.models.segmentation import TrainSpan

    extra = ["trainer.max_epochs=-1", "trainer.max_steps=2"]
    out, rows = ddp_run(tmp_path, "small", *extra, timeout=240)
    with (out / "selections" / "round_00.csv").open() as f:
        images = {row["image"] for row in csv.DictReader(f)}
    assert 4 < len(images) < 2 * 4  # the case: > a batch in all, < a batch per rank
    assert [r["round"] for r in rows] == ["0", "1"]
    # round 0's model trained: its weights are not those it started from
    cfg = load_run_config(out, ["trainer.devices=1", "trainer.strategy=auto"])
    loop = build_loop(cfg, out, True, Console(quiet=True), False, read_only=True)
    pl.seed_everything(int(cfg.seed) * 1000, verbose=False)  # round 0's initialisation
    start = loop.model_factory(1, TrainSpan()).state_dict()
    trained = loop.rundir.load_checkpoint(0)
    assert any(not torch.equal(start[k], trained[k]) for k in trained)


def test_ddp_image_labels_run_and_resume(tmp_path: Path):
    """Image tags on 2 processes: CAMs, the boundary network, the walk and stage 2 run under
    DDP, and a run killed after round 1's fit resumes to the same metrics (the boundary
    F-measures are recomputed from the round's checkpoints)."""
    extra = ["experiment=image_labels_synthetic", "active.budget=40", "weak.walk_steps=8"]
    out, rows = ddp_run(tmp_path, "tags", *extra)
    assert len(rows) == 2 and "boundary_mf_ods" in rows[1] and "pseudo_mIoU" in rows[1]
    resumes_alike(out, tmp_path)
