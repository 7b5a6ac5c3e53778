"""Strategies and method plug-ins that keep state across passes or rounds make the same
decisions on every rank, and the same decisions as one process.

Each setting runs 3 rounds on 2 CPU processes (DDP, gloo, started as torchrun starts them,
``ddp_worker.py``); after every commit each rank records what it holds (labels, LAMDA's
source-sampling weights, sieve masks), and the ranks must agree round by round. Then, for
every round r >= 1, one process takes the DDP run's model and labels of round r - 1 and
selects round r again (scoring, selection, the plug-ins' ``after_select``): its answers,
LAMDA's label-distribution estimate and the sieve masks must equal what the 2-process run
committed. The two processes' models differ from a 1-process run's (DDP trains on two
shards), so the comparison holds the model fixed and checks every decision taken with it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import load_run_config
from alseg.data.labels import LabelStore

pytestmark = pytest.mark.ddp

DDP = ["trainer.devices=2", "trainer.strategy=ddp", "trainer.accelerator=cpu"]
SETTINGS = {
    # MulActSeg: pixbal's two passes (class weights from pass 0), stage-2 pseudo labels
    "pixbal": ["experiment=mulactseg_synthetic", "logger=none"],
    # LAMDA, classification: free picks -> label-distribution estimate -> source sampling
    "lamda": [
        "experiment=lamda_synthetic",
        "data.num_train=40",
        "data.num_source=40",
        "data.num_val=6",
        "data.num_test=10",
        "data.image_size=16",
        "regions.cell=16",
        "adaptation.disc_hidden=[16]",
        "active.budget=4",
        "trainer.max_steps=3",
        "active.strategy_params.confidence=0.02",  # free picks from a 3-step model too
    ],
    # cold start: embeddings of the rows sampled on every rank, k-means / coverage on rank 0
    "typiclust": ["active.strategy=typiclust", "active.strategy_params.embedding=model"],
    "probcover": ["active.strategy=probcover", "active.strategy_params.embedding=model"],
    # adaptive superpixels: merged regions in the scoring pass, sieving after each selection
    "adaptive_sizebal": [
        "experiment=adaptive_superpixel_synthetic",
        "sieve.min_pixels=8",
    ],
}


def run_two_ranks(run_dir: Path, overrides: list[str], worker: str = "ddp_worker.py") -> None:
    """Start 2 ranks the way torchrun does (environment variables), wait for both."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
        env.update(
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        cmd = [sys.executable, str(Path(__file__).parent / worker), str(run_dir), *overrides]
        procs.append(subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True))
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_selections_of_two_processes_equal_one_process(tmp_path, name):
    out = tmp_path / "ddp"
    extra = [*SETTINGS[name], "active.rounds=3", "active.keep_checkpoints=3", *DDP]
    overrides = tiny_overrides(tmp_path, *extra)
    run_two_ranks(out, overrides)
    ranks = [json.loads((tmp_path / f"digest.rank{r}.json").read_text()) for r in (0, 1)]
    assert [x["round"] for x in ranks[0]] == [0, 1, 2]
    assert ranks[0] == ranks[1]  # every rank holds the same labels, weights, sieves

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    cfg = load_run_config(copy, ["trainer.devices=1", "trainer.strategy=auto"])
    loop = build_loop(cfg, copy, resume=True, console=Console(quiet=True), progress=False)
    try:
        for r in (1, 2):
            loop.store.load(copy / "labels" / f"round_{r - 1:02d}.npz")
            loop.dm.refresh()
            for ext in loop.extensions:
                ext.on_resume(r - 1, "evaluated")
            loop.model = None
            ann, selection = loop.acquire(r)
            for ext in loop.extensions:  # writes into the copy: sieve masks, estimates
                ext.after_select(r, ann, selection)
            want = LabelStore(loop.store.num_regions, loop.store.num_classes)
            want.load(out / "labels" / f"round_{r:02d}.npz")
            new = np.flatnonzero(want.round == r)
            assert sorted(ann.region_ids.tolist()) == new.tolist(), f"round {r}"
            loop.store.add(ann, r)
            got = loop.store.state_dict()
            for k, v in want.state_dict().items():
                np.testing.assert_array_equal(got[k], v, err_msg=f"round {r}: {k}")
            if name == "lamda":
                ref = json.loads((out / "label_dist" / f"round_{r:02d}.json").read_text())
                mine = json.loads((copy / "label_dist" / f"round_{r:02d}.json").read_text())
                # floats of a forward pass over other batches: equal to rounding
                assert mine["round"] == ref["round"] and mine["true"] == ref["true"]
                np.testing.assert_allclose(mine["estimate"], ref["estimate"], rtol=1e-6)
            if name == "adaptive_sizebal":
                sieve = Path("sieve") / f"round_{r:02d}" / "manifest.json"
                assert (copy / sieve).read_text() == (out / sieve).read_text()
    finally:
        loop.close()
    if name == "pixbal":  # stage 2 ran under DDP: its pseudo labels cover every labeled image
        manifest = json.loads((out / "pseudo_labels" / "round_02" / "manifest.json").read_text())
        labeled = LabelStore.from_file(out / "labels" / "round_02.npz", loop.store.num_regions, 8)
        images = np.unique(loop.dm.regions.image_of(np.flatnonzero(labeled.labeled_mask())))
        assert sorted(manifest["files"]) == [f"{i:06d}.png" for i in images]


def test_pruning_scores_are_the_same_on_every_rank(tmp_path):
    """A scoring run on 2 ranks: both hold the same training dynamics (every presented
    sample recorded, whichever rank trained on it) and the same EL2N, which equals one
    process's EL2N with the final model (rank 0's batch-norm statistics)."""
    overrides = [
        "task=prune",
        "experiment=prune_shapes",
        "data.num_train=24",
        "data.num_val=6",
        "data.num_test=6",
        "data.image_size=16",
        "regions.cell=16",
        "data.batch_size=4",
        "trainer.max_epochs=3",
        "prune.window=2",
        "prune.score_seeds=[0]",
        "prune.el2n_epochs=[3]",
        "prune.grand_epochs=[]",
        f"regions.cache_dir={tmp_path / 'cache'}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        *DDP,
    ]
    run_two_ranks(tmp_path / "score", overrides, "ddp_prune_worker.py")
    ranks = [json.loads((tmp_path / f"prune.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["dynamics"] == ranks[1]["dynamics"]
    assert ranks[0]["el2n"] == ranks[1]["el2n"]
    presented = ~np.isnan(np.array(ranks[0]["dynamics"]["acc"]))
    assert presented.sum(1).tolist() == [24, 24, 24]  # 2 ranks x 3 batches of 4, each epoch
    assert np.allclose(ranks[0]["el2n"], ranks[0]["local_el2n"], atol=1e-5)
    assert (tmp_path / "score" / "scores.parquet").is_file()


def test_text_scores_are_the_same_on_every_rank(tmp_path):
    """A scoring run on instruction data on 2 ranks (data-parallel fits, scoring passes
    shared out over the ranks and gathered): both ranks hold the same score of every
    example, and a sharded pass equals one process's pass over every example."""
    pytest.importorskip("peft", reason='the llm extra is not installed (pip install -e ".[llm]")')
    from alseg.config import compose
    from alseg.text.filtering import setup
    from alseg.text.lm import example_scores
    from alseg.text.run import study_of

    overrides = [
        "experiment=prune_text",
        "data.n=30",
        "data.trusted=2",
        "data.target=2",
        "data.test=2",
        "text.steps=2",
        "text.ref_steps=3",
        "text.el2n_steps=2",
        "text.less_epochs=2",
        "text.less_warmup=0.2",
        "text.clusters=3",
        "text.less_dim=16",
        "text.batch=4",
        "trainer.enable_progress_bar=false",
        "logger=none",
        *DDP,
    ]
    run_two_ranks(tmp_path / "score", overrides, "ddp_text_worker.py")
    ranks = [json.loads((tmp_path / f"text.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["scores"] == ranks[1]["scores"]
    assert ranks[0]["scores"]["index"] == list(range(30))
    assert all(np.isfinite(ranks[0]["scores"][k]).all() for k in ("ppl", "el2n", "less"))
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    assert ranks[0]["initial"] == ranks[1]["initial"]
    from alseg.schema import settings

    s = setup(study_of(settings(compose(overrides))), 0)
    one = example_scores(s.init, s.enc)  # no process group here: every example at once
    for k in ("loss", "el2n", "embedding"):
        assert np.allclose(ranks[0]["initial"][k], one[k].numpy(), atol=1e-5)
    assert (tmp_path / "score" / "scores.parquet").is_file()
