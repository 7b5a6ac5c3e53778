"""Run dirs that cannot be corrupted, and a config that fails before anything runs.

One test per way a hostile (or unlucky) user could break a run: two writers, bad values,
a failure before the first commit, mixed image sizes, files changed behind the run's back,
leftovers of interrupted writes, and a W&B run resumed after a kill.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import closed_wandb_logs, rewind, tiny_overrides
from layout_fixtures import folder_tree
from rich.console import Console
from test_loop import Crash, crash_in, read_csv

from alseg.build import build_loop
from alseg.cli import main
from alseg.config import ConfigError, compose, load_run_config, typed
from alseg.data.datasets import DataError
from alseg.rundir import RunDir, RunDirError
from alseg.state import Phase, RunState

QUIET = Console(quiet=True)


def run(overrides, run_dir: Path, resume: bool = False, patch=None):
    cfg = load_run_config(run_dir) if resume else compose(overrides)
    loop = build_loop(cfg, run_dir, resume=resume, console=QUIET, progress=False)
    if patch:
        patch(loop)
    return loop.run()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-round run: (tmp, run dir, overrides)."""
    tmp = tmp_path_factory.mktemp("finished")
    overrides = tiny_overrides(tmp, "active.rounds=2", "active.keep_checkpoints=2")
    run(overrides, tmp / "run")
    return tmp, tmp / "run", overrides


def copy_of(run_dir: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(run_dir, dest)
    return dest


# -- 1. one writer per run dir -------------------------------------------------------------
def test_a_second_writer_stops_at_once_naming_the_holder(finished, tmp_path, capsys):
    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")
    before = (out / "state.json").read_bytes()
    holder = RunDir(out)
    holder.acquire_lock("resume")  # as if another `alseg resume` were running
    try:
        assert main(["resume", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "in use" in err and "alseg resume" in err
        assert main(["run", *tiny_overrides(tmp_path, f"run_dir={out}")]) == 2
        assert "in use" in capsys.readouterr().err
    finally:
        holder.release_lock()
    assert (out / "state.json").read_bytes() == before  # nothing written by either
    assert main(["resume", str(out)]) == 0  # released: the next writer gets it


def test_the_lock_of_a_killed_holder_is_free(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time; from alseg.rundir import RunDir; "
        f"rd = RunDir({str(out)!r}); rd.acquire_lock('run'); print('locked', flush=True); "
        "time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunDirError, match=f"pid {proc.pid}"):
        RunDir(out).acquire_lock("run")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    rd = RunDir(out)
    rd.acquire_lock("run")  # never stale: the OS released it with the process
    rd.release_lock()


# -- 2. typed config, checked when composed -------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ("active.budget=abc", "active.budget='abc' is not valid: expected a number"),
        ("data.image_size=abc", "data.image_size='abc' is not valid"),
        ("regions.n_segments=0", "regions.n_segments=0 must be >= 2"),
        ("regions.n_segments=-3", "regions.n_segments=-3 must be >= 2"),
        ("trainer.devices=abc", "trainer.devices='abc' is not valid"),
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc' is not valid: expected an integer"),
        ("model.lr=abc", "model.lr='abc' is not valid: expected a number"),
        ("seed=abc", "seed='abc' is not valid: expected an integer"),
        ("active.rounds=2.5", "active.rounds=2.5 is not valid: expected an integer"),
        ("active.keep_checkpoints=0", "active.keep_checkpoints=0 must be >= 1"),
        ("data.batch_size=1", "data.batch_size=1 cannot train model.arch=DeepLabV3Plus"),
        ("labeling.trim_kernel=4", "labeling.trim_kernel=4 must be odd"),
        ("model.loss_weights=[1,2]", "model.loss_weights=[1.0, 2.0] must have 3 values"),
    ],
)
def test_bad_values_are_named_before_anything_is_written(tmp_path, override, message, capsys):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        compose([override])
    out = tmp_path / "run"
    assert main(["run", override, f"run_dir={out}"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not out.exists()


# -- 3. a failure before the first commit leaves nothing in the way ---------------------------
def test_a_run_that_failed_before_round_0_starts_again_in_the_same_dir(tmp_path):
    out = tmp_path / "run"
    overrides = tiny_overrides(tmp_path, "active.rounds=2")

    def fail_first_commit(loop):
        def boom(r, ann):
            raise RuntimeError("killed before round 0 was committed")

        loop.commit = boom

    with pytest.raises(RuntimeError, match="killed before"):
        run(overrides, out, patch=fail_first_commit)
    assert (out / "config.yaml").is_file() and not (out / "state.json").exists()
    with pytest.raises(RunDirError, match="never committed its first round.*alseg run"):
        load_run_config(out)
    rows = run(overrides, out)  # `alseg run` with the same run_dir: a fresh start
    assert [r["round"] for r in rows] == ["0", "1"]


# -- 4. mixed image sizes --------------------------------------------------------------------
def test_mixed_image_sizes_fail_when_the_split_opens_naming_two_files(tmp_path):
    root = folder_tree(tmp_path / "f", {"train": 6, "val": 2, "test": 2})
    base = [
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.batch_size=2",
        "data.num_workers=0",
        "regions.method=grid",
        "regions.cell=8",
        f"regions.cache_dir={tmp_path / 'cache'}",
        "regions.num_workers=1",
        "active.rounds=2",
        "active.budget=4",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
    ]
    with pytest.raises(DataError, match="train images differ in size") as e:
        run(base, tmp_path / "bad")
    assert "img000.jpg is 56x40" in str(e.value) and "img001.jpg is 32x32" in str(e.value)
    assert "data.crop_size" in str(e.value) and "data.pool_batch_size=1" in str(e.value)
    assert not (tmp_path / "bad").exists()
    # the documented setting works end to end: crops for training, single-image scoring
    rows = run([*base, "data.crop_size=[32,32]", "data.pool_batch_size=1"], tmp_path / "ok")
    assert len(rows) == 2


# -- 5. resume reads and checks what it depends on ---------------------------------------------
def test_a_damaged_older_labels_file_is_named(finished, tmp_path):
    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")
    (out / "labels" / "round_00.npz").write_bytes(b"")
    with pytest.raises(RunDirError, match=r"labels/round_00.npz is corrupt"):
        run([], out, resume=True)


def test_an_edited_config_is_refused_and_safe_keys_change_explicitly(finished, tmp_path, capsys):
    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")
    text = (out / "config.yaml").read_text()
    (out / "config.yaml").write_text(text.replace("budget: 8.0", "budget: 5.0"))
    with pytest.raises(ConfigError, match=r"config.yaml differs .*\(active.budget\)"):
        load_run_config(out)
    (out / "config.yaml").write_text(text)
    with pytest.raises(ConfigError, match="active.strategy cannot change in a started run"):
        load_run_config(out, ["active.strategy=random"])
    # a finished 2-round run extended to 3 rounds, with a safe key changed on the way
    assert main(["resume", str(out), "active.rounds=3", "trainer.log_every_n_steps=5"]) == 0
    assert [r["round"] for r in read_csv(out / "metrics.csv")] == ["0", "1", "2"]
    state = json.loads((out / "state.json").read_text())
    assert state["config_changes"] == [
        {"round": 1, "keys": ["active.rounds", "trainer.log_every_n_steps"]}
    ]
    assert "rounds: 3" in (out / "config.yaml").read_text()


def test_a_run_dir_of_an_older_alseg_resumes_with_the_new_sections(finished, tmp_path):
    """config.yaml of a run started before the ``weak`` and ``prune`` sections existed:
    they get today's defaults, and the run resumes."""
    from omegaconf import OmegaConf

    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")

    def drop(text: str) -> str:
        cfg = OmegaConf.create(text)
        for key in ("weak", "prune"):
            cfg.pop(key)
        return OmegaConf.to_yaml(cfg)

    (out / "config.yaml").write_text(drop((out / "config.yaml").read_text()))
    state = json.loads((out / "state.json").read_text())
    state["config"] = drop(state["config"])
    (out / "state.json").write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="has no value"):  # as it is, it does not type
        typed(OmegaConf.load(out / "config.yaml"))
    cfg = load_run_config(out)
    assert cfg.weak.pooling == "gap" and cfg.prune.by == "el2n"
    assert main(["resume", str(out), "active.rounds=3"]) == 0
    assert [r["round"] for r in read_csv(out / "metrics.csv")] == ["0", "1", "2"]


@pytest.mark.parametrize(
    "content,message",
    [
        (os.urandom(64), "state.json is corrupt"),
        (b'{"round": "x", "phase": "fitted", "seed": 0}', r"round 'x' is not an integer"),
        (b'{"round": 7, "phase": "fitted", "seed": 0}', "at round 7 but active.rounds=2"),
        (b'{"round": 1, "phase": "sleeping", "seed": 0}', "phase 'sleeping' is not one of"),
    ],
)
def test_a_corrupt_state_file_is_named(finished, tmp_path, content, message, capsys):
    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")
    (out / "state.json").write_bytes(content)
    assert main(["resume", str(out)]) == 2
    err = capsys.readouterr().err
    assert "state.json" in err and "Traceback" not in err
    import re

    assert re.search(message, err), err


def test_a_corrupt_checkpoint_never_suggests_unpickling(finished, tmp_path):
    _, ref, _ = finished
    rd = RunDir(copy_of(ref, tmp_path / "run"))
    rd.checkpoint_path(1).write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="round_01.pt is corrupt") as e:
        rd.load_checkpoint(1)
    assert "weights_only=False" not in str(e.value)


# -- 6. leftovers ------------------------------------------------------------------------------
def test_temp_files_of_interrupted_writes_are_removed_on_resume(finished, tmp_path):
    _, ref, _ = finished
    out = copy_of(ref, tmp_path / "run")
    rewind(out, 1, "fitted", metrics_rows=1)
    leftovers = [
        out / "checkpoints" / ".round_01.pt.x1y2.tmp",
        out / "labels" / ".round_01.npz.abc.tmp",
        out / ".metrics.csv.q.tmp",
    ]
    for p in leftovers:
        p.write_bytes(b"\0" * 100)
    partial = out / "sieve" / "round_01.partial"
    partial.mkdir(parents=True)
    run([], out, resume=True)
    assert not any(p.exists() for p in leftovers) and not partial.exists()
    assert read_csv(out / "metrics.csv") == read_csv(ref / "metrics.csv")


def test_resumed_wandb_pieces_continue_the_step_count(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from alseg.wandb_offline import history

    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    overrides = tiny_overrides(tmp_path, "active.rounds=3", "logger=wandb")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(overrides, out, patch=crash_in("fit", 2))
    # A resume is a new process: the crashed one's W&B service has closed its files. Here,
    # in one process, teardown stands in for that exit (see closed_wandb_logs).
    wandb.teardown()
    time.sleep(1.1)  # W&B names offline folders by the second
    run(overrides, out, resume=True)
    pieces = closed_wandb_logs(out)
    run_id = json.loads((out / "state.json").read_text())["wandb_id"]
    assert len(pieces) == 2 and all(p.parent.name.endswith(run_id) for p in pieces)
    first, second = (history(p) for p in pieces)
    assert min(r["_step"] for r in second) > max(r["_step"] for r in first)
    rounds = [r["al/round"] for r in first + second if "al/mIoU" in r]
    assert rounds == [0, 1, 2]  # the synced history: each round once, in order
    assert Crash  # (the crash helper of test_loop)
    assert np.isfinite([r["al/mIoU"] for r in second if "al/mIoU" in r]).all()


class _Kill(BaseException):
    """A kill at a chosen point: no cleanup of the run dir runs (as with SIGKILL)."""


def test_a_transaction_lands_whole_or_not_at_all(tmp_path, monkeypatch):
    """Several files and state.json change together: an exception discards the staged
    files; a kill before the journal is written leaves the old files (recover drops the
    staging), a kill after it is finished by the next writer (recover applies it)."""
    import os

    from alseg.commits import STAGING
    from alseg.rundir import RunDir

    def fresh(name):
        rd = RunDir(tmp_path / name)
        with rd.locked("test"):
            rd.write_file(rd.path / "a.txt", b"old a")
            rd.write_state(RunState(round=0, phase=Phase.LABELED))
        return rd

    def commit(rd):
        with rd.locked("test"), rd.transaction():
            rd.write_file(rd.path / "a.txt", b"new a")
            rd.write_file(rd.path / "sub" / "b.txt", b"new b")
            rd.write_state(RunState(round=1, phase=Phase.LABELED))

    def files(rd):
        rd2 = RunDir(rd.path)
        state = rd2.read_state()
        rd2.verify()  # every committed file matches state.json's checksums
        b = rd.path / "sub" / "b.txt"
        return (
            state.round,
            (rd.path / "a.txt").read_bytes(),
            b.read_bytes() if b.exists() else None,
        )

    rd = fresh("ok")
    commit(rd)
    assert files(rd) == (1, b"new a", b"new b") and not (rd.path / STAGING).exists()

    rd = fresh("error")
    with pytest.raises(ValueError), rd.locked("test"), rd.transaction():
        rd.write_file(rd.path / "a.txt", b"new a")
        raise ValueError("boom")
    assert files(rd) == (0, b"old a", None) and not (rd.path / STAGING).exists()

    replace, outcomes = os.replace, []
    for k in range(1, 10):
        rd, calls = fresh(f"kill{k}"), [0]

        def killing(src, dst, _k=k, calls=calls):
            calls[0] += 1
            if calls[0] == _k:
                raise _Kill
            return replace(src, dst)

        monkeypatch.setattr(os, "replace", killing)
        try:
            commit(rd)
            killed = False
        except _Kill:
            killed = True
        monkeypatch.setattr(os, "replace", replace)
        if not killed:
            break
        assert (rd.path / STAGING).exists()  # what the kill left
        with rd.locked("resume"):  # the next writer recovers
            pass
        outcomes.append(files(rd))
        assert not (rd.path / STAGING).exists()
    # the first kills (staging, the journal itself) roll back; later ones roll forward
    assert outcomes[0] == (0, b"old a", None) and outcomes[-1] == (1, b"new a", b"new b")
    assert set(outcomes) == {(0, b"old a", None), (1, b"new a", b"new b")}


def _one_shot_dir(path, task_overrides, finished):
    """A run dir of a one-shot task (prune, debias): config.yaml, and state.json if
    ``finished`` (they write it when they end)."""
    from omegaconf import OmegaConf

    from alseg.rundir import RunDir

    rd = RunDir(path)
    with rd.locked("test"):
        rd.create(OmegaConf.to_yaml(compose(task_overrides), resolve=True))
        if finished:
            rd.write_state(RunState(round=0, phase=Phase.DONE))
    return path


def test_resume_advice_fits_the_task(tmp_path, capsys):
    """Pruning and debiasing runs have no rounds and are not resumed: what to do with an
    unfinished or a finished one names their own commands (it spoke of round 0's labels
    and `alseg run`, and a finished retrain's `run` and `resume` pointed at each other)."""
    retrain = ["experiment=prune_shapes", "prune.stage=retrain"]
    unfinished = _one_shot_dir(tmp_path / "p1", retrain, False)
    assert main(["resume", str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert f"alseg prune retrain ... run_dir={unfinished}" in err and "round 0" not in err

    finished = _one_shot_dir(tmp_path / "p2", retrain, True)
    assert main(["resume", str(finished)]) == 2
    err = capsys.readouterr().err
    assert "finished" in err and "not resumed" in err and "another run_dir" in err
    args = ["prune", "retrain", "experiment=prune_shapes", "logger=none", f"run_dir={finished}"]
    assert main([*args, "scores=" + str(finished)]) == 2  # its scores: none, named first
    capsys.readouterr()
    (finished / "scores.parquet").write_bytes(b"")
    assert main([*args, "scores=" + str(finished)]) == 2
    err = capsys.readouterr().err
    assert "holds a finished pruning run" in err and "alseg resume" not in err

    debias = _one_shot_dir(tmp_path / "d1", ["experiment=lwbc_colored_shapes"], False)
    assert main(["resume", str(debias)]) == 2
    err = capsys.readouterr().err
    assert f"alseg run ... run_dir={debias}" in err and "round 0" not in err


def test_a_config_saved_with_float_upweights_still_types():
    """Run dirs saved before JTT's up-weights became whole copies hold them as floats
    (`upweight: [20.0, 50.0, 100.0]`); they must still load, and a fraction is refused."""
    from omegaconf import OmegaConf

    cfg = compose([])
    cfg.debias.jtt.upweight = [20.0, 50.0, 100.0]
    assert list(typed(OmegaConf.create(OmegaConf.to_yaml(cfg))).debias.jtt.upweight) == [
        20,
        50,
        100,
    ]
    with pytest.raises(ConfigError, match=r"debias.jtt.upweight=\[2.5\] must be whole numbers"):
        compose(["debias.jtt.upweight=[2.5]"])


def test_phases_are_stored_as_the_strings_older_run_dirs_hold():
    from alseg.state import PHASES, Phase

    assert PHASES == ("labeled", "fitted", "evaluated", "done", "awaiting_answers")
    assert json.loads(json.dumps({"phase": Phase.AWAITING_ANSWERS})) == {
        "phase": "awaiting_answers"
    }
    assert Phase("done") is Phase.DONE and f"{Phase.FITTED}" == "fitted"
