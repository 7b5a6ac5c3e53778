"""alseg pretrain: a resumed pre-training gives the same weights, the weights load into
every model of a later run, and weights of another encoder or pool are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from rich.console import Console

from alseg.build import build_loop
from alseg.cli import main
from alseg.config import compose
from alseg.models.segmentation import TrainSpan
from alseg.pretrain import ENCODER_FILE, EpochCommit, PretrainError, run_pretrain
from alseg.rundir import RunDirError
from alseg.selfsup import EpochSampler

TINY = [
    "data.num_train=12",
    "data.num_val=4",
    "data.num_test=4",
    "data.image_size=32",
    "pretrain.epochs=2",
    "pretrain.batch_size=4",
    "pretrain.input_size=32",
    "logger=none",
    "trainer.enable_progress_bar=false",
]


class Killed(BaseException):
    """A kill after an epoch's commit (nothing after it runs)."""


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / ENCODER_FILE, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("method", ["simclr", "densecl"])
def test_a_killed_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch, method):
    cfg = compose([*TINY, f"pretrain.method={method}", f"regions.cache_dir={tmp_path}/c"])
    whole = run_pretrain(cfg, tmp_path / "whole", Console(quiet=True))
    commit = EpochCommit.on_train_epoch_end

    def kill_after_first(self, trainer, module):
        commit(self, trainer, module)
        if trainer.current_epoch == 0:
            raise Killed

    monkeypatch.setattr(EpochCommit, "on_train_epoch_end", kill_after_first)
    with pytest.raises(Killed):
        run_pretrain(cfg, tmp_path / "killed", Console(quiet=True))
    monkeypatch.undo()
    assert not (tmp_path / "killed" / ENCODER_FILE).exists()
    resumed = run_pretrain(cfg, tmp_path / "killed", Console(quiet=True))
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (resumed / "checkpoints" / "last.ckpt").exists()  # done: only the encoder


def test_weights_load_into_every_round_and_others_are_refused(tmp_path, capsys):
    base = [*TINY, f"regions.cache_dir={tmp_path}/c", "regions.n_segments=12"]
    run = tmp_path / "pre"
    assert main(["pretrain", *base, f"run_dir={run}"]) == 0
    assert f"model.encoder_weights={run}" in capsys.readouterr().out
    assert main(["pretrain", *base, f"run_dir={run}"]) == 0  # found done: reused
    # keys the pre-training does not read do not stop the reuse (a study's own run settings)
    assert main(["pretrain", *base, "active.keep_checkpoints=5", f"run_dir={run}"]) == 0
    with pytest.raises(RunDirError, match=r"other settings \(pretrain.epochs: 2 -> 3\)"):
        run_pretrain(compose([*base, "pretrain.epochs=3"]), run, Console(quiet=True))
    al = [*base, "active.rounds=1", "active.budget=8", f"model.encoder_weights={run}"]
    loop = build_loop(compose(al), tmp_path / "al", False, Console(quiet=True), False)
    pre = weights(run)
    for _ in range(2):  # each re-initialisation starts the encoder from the weights
        model = loop.model_factory(1, TrainSpan())
        enc = model.network.encoder.state_dict()
        assert all(torch.equal(enc[k], pre[k]) for k in pre)
    fresh = build_loop(compose(al[:-1]), tmp_path / "plain", False, Console(quiet=True), False)
    enc = fresh.model_factory(1, TrainSpan()).network.encoder.state_dict()
    assert not all(torch.equal(enc[k], pre[k]) for k in pre)
    loop.close()
    fresh.close()
    with pytest.raises(PretrainError, match="holds a 'resnet18' encoder; this run's model"):
        build_loop(compose([*al, "model.encoder=resnet34"]), tmp_path / "x", False)
    with pytest.raises(PretrainError, match="pre-trained on the pool .*n12.*this run's pool is"):
        build_loop(compose([*al, "data.num_train=10"]), tmp_path / "y", False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(PretrainError, match="no encoder.pt there"):
        cfg = compose([*al[:-1], f"model.encoder_weights={tmp_path}/none/"])
        build_loop(cfg, tmp_path / "z", False)


def test_epoch_sampler_orders_by_epoch_and_shards(monkeypatch):
    s = EpochSampler(10, seed=3)
    first = list(s)
    assert sorted(first) == list(range(10))
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(10, 20)) and [k - 10 for k in second] != first
    s.set_epoch(0)
    assert list(s) == first  # the same epoch, the same order
    monkeypatch.setattr("alseg.selfsup.world_size", lambda: 4)
    shards = []
    for rank in range(4):
        monkeypatch.setattr(EpochSampler, "rank", property(lambda self, r=rank: r))
        shards.append(list(s))
    assert [len(x) for x in shards] == [3, 3, 3, 3] and len(s) == 3
    assert set(sum(shards, [])) == set(range(10))  # 10 items, 2 repeated to pad


def test_a_schedule_starts_with_typiclust_on_the_pretrained_encoder(tmp_path):
    """active.strategy=[typiclust,bvsb]: round 0's set comes from TypiClust on the
    pre-trained encoder (not the random set), later rounds from BvSB; a run killed after a
    round's labels resumes to the same labels."""
    import json

    import numpy as np
    from helpers import rewind, tiny_overrides

    run = run_pretrain(compose([*TINY, f"regions.cache_dir={tmp_path}/c"]), tmp_path / "pre")
    sched = [
        "active.strategy=[typiclust,bvsb]",
        f"model.encoder_weights={run}",
        "active.rounds=2",
    ]
    base = tiny_overrides(tmp_path, "data.num_val=4", "data.num_test=4")
    out = tmp_path / "sched"
    build_loop(compose([*base, *sched]), out, False, Console(quiet=True), False).run()
    rand = tmp_path / "random"
    build_loop(compose([*base, "active.rounds=1"]), rand, False, Console(quiet=True), False).run()
    first = (out / "selections" / "round_00.csv").read_text()
    assert first != (rand / "selections" / "round_00.csv").read_text()
    assert json.loads((out / "state.json").read_text())["spent"] <= 8 + 8
    labels = (out / "labels" / "round_01.npz").read_bytes()
    rewind(out, 0, "evaluated", metrics_rows=1)  # killed before round 1's selection
    build_loop(compose([*base, *sched]), out, True, Console(quiet=True), False).run()
    assert (out / "labels" / "round_01.npz").read_bytes() == labels
    assert (out / "selections" / "round_00.csv").read_text() == first
    assert np.isfinite(np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1)).any()


def test_default_run_dir_is_named_after_pool_and_settings_without_shell_specials():
    from alseg.pretrain import default_dir

    cfg = compose(["data=labelmefacade"])
    a = default_dir(cfg, "labelmefacade-alseg_pool-n600-crop(96, 128)-0bc091979c61")
    assert a.name.startswith("simclr-resnet18-labelmefacade-alseg_pool-n600-crop96x128-")
    assert " " not in str(a) and "(" not in str(a)
    other = default_dir(compose(["data=labelmefacade", "pretrain.epochs=3"]), "x")
    assert other.name.split("-")[-1] != default_dir(cfg, "x").name.split("-")[-1]
