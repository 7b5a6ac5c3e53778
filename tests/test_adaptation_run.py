"""Active domain adaptation end to end: classification (shapes, LAMDA + DANN, source-only
round 0) and segmentation (synthetic scenes with a label shift, AADA)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from helpers import load_script

from alseg.cli import main
from alseg.config import ConfigError, compose
from alseg.rundir import RunDir

COMMON = [
    "adaptation.enabled=true",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "active.rounds=2",
]


def _rows(run_dir):
    return list(csv.DictReader((run_dir / "metrics.csv").open()))


def test_lamda_classification_run(tmp_path, capsys):
    run_dir = tmp_path / "cls"
    args = [
        "run",
        "data=shapes",
        "data.num_train=48",
        "data.num_source=48",
        "data.num_val=8",
        "data.num_test=24",
        "data.image_size=16",
        "data.batch_size=16",
        "model.arch=Classifier",
        "model.head=cosine",
        "regions.method=grid",
        "regions.cell=16",
        f"regions.cache_dir={tmp_path / 'cache'}",
        "adaptation.alignment=dann",
        "adaptation.disc_hidden=[32,32]",
        "active.strategy=lamda",
        "active.init_budget=0",
        "active.budget=6",
        "model.lr=0.05",  # rounds 0 and 1 then predict differently (checked below)
        f"run_dir={run_dir}",
        *COMMON,
    ]
    assert main(args) == 0
    rows = _rows(run_dir)
    assert [float(r["clicks"]) for r in rows] == [0.0, 6.0]  # round 0 is source-only
    assert "acc" in rows[0] and 0 <= float(rows[1]["acc"]) <= 100
    dist = json.loads((run_dir / "label_dist" / "round_01.json").read_text())
    est, true = np.array(dist["estimate"]), np.array(dist["true"])
    assert est.shape == true.shape == (6,) and est.sum() == pytest.approx(1.0)
    assert float(rows[1]["label_dist_l1"]) == pytest.approx(np.abs(est - true).sum(), abs=1e-3)
    sel = list(csv.DictReader((run_dir / "selections" / "round_01.csv").open()))
    assert len(sel) == 6 and len({r["image"] for r in sel}) == 6  # one region per image
    # scripts/shapes_transfer.py (the LAMDA diagnosis, docs/results.md) reloads a round model; on
    # the run's own target look (data.gap=1) it gives that round's own test accuracy
    # (it only reads: it works while a writer, e.g. an `alseg resume` of the run, holds the lock)
    accs = [float(r["acc"]) for r in rows]
    assert accs[0] != accs[1]  # else this check could not tell the rounds' models apart
    script = load_script("shapes_transfer")
    writer = RunDir(run_dir)

    def stamps() -> dict:  # every file but the lock this test takes as the writer
        return {p: p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.name != ".lock"}

    files = stamps()
    for r, acc in enumerate(accs):
        capsys.readouterr()
        with writer.locked("resume"):
            script.main(run_dir, r)
        lines = capsys.readouterr().out.splitlines()
        scores = {
            k.strip(): float(v.strip(" %")) for k, v in (x.rsplit(None, 1) for x in lines[1:])
        }
        assert list(scores) == ["source"] + [f"target, gap {g:g}" for g in (0, 0.25, 0.5, 1)]
        assert scores["target, gap 1"] == pytest.approx(acc, abs=0.051)
    assert stamps() == files  # and wrote nothing


def test_aada_segmentation_run_with_label_shift(tmp_path):
    run_dir = tmp_path / "seg"
    args = [
        "run",
        "data.domain=target",
        "data.label_shift=0.5",
        "data.num_train=12",
        "data.num_source=12",
        "data.num_val=4",
        "data.num_test=6",
        "data.image_size=32",
        "data.batch_size=4",
        "regions.n_segments=12",
        f"regions.cache_dir={tmp_path / 'cache'}",
        "regions.num_workers=1",
        "adaptation.alignment=dann",
        "adaptation.disc_hidden=[16]",
        "active.strategy=aada",
        "active.budget=8",
        f"run_dir={run_dir}",
        *COMMON,
    ]
    assert main(args) == 0
    assert len(_rows(run_dir)) == 2


def test_adaptation_config_errors():
    with pytest.raises(ConfigError, match="needs the target domain"):
        from alseg.parts import build_parts

        build_parts(compose(["adaptation.enabled=true", "data.num_train=4"]), progress=False)
    with pytest.raises(ConfigError, match="init_budget=0"):
        compose(["active.init_budget=0"])
    with pytest.raises(ConfigError, match="adaptation.alignment='gan' is not valid"):
        compose(["adaptation.alignment=gan"])
    with pytest.raises(ConfigError, match="set trainer.max_steps > 0"):
        compose(["active.schedule=continuous", "trainer.max_steps=-1"])
    for bad in ("active.init_steps=100", "active.schedule=continuous active.init_steps=0"):
        with pytest.raises(ConfigError, match="iterations of round 0"):
            compose([*bad.split(), "trainer.max_steps=10"])
