"""End-to-end runs of the round loop on tiny synthetic data (a few seconds each)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose, load_run_config
from alseg.rundir import RunDirError

QUIET = Console(quiet=True)


def run(overrides: list[str], run_dir: Path, resume: bool = False, patch=None):
    loop = build_loop(compose(overrides), run_dir, resume=resume, console=QUIET, progress=False)
    if patch:
        patch(loop)
    return loop.run()


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


class Crash(pl.Callback):
    def on_train_batch_end(self, *args, **kwargs):
        raise RuntimeError("simulated crash during training")

    def on_predict_batch_end(self, *args, **kwargs):
        raise RuntimeError("simulated crash during scoring")


def crash_in(phase: str, at_round: int):
    """Patch a loop so that the trainer of ``phase`` ("fit" | "select") at ``at_round`` crashes."""

    def patch(loop):
        method = getattr(loop, phase)
        factory = loop.trainer_factory

        def wrapped(round):
            if round == at_round:
                loop.trainer_factory = lambda cbs, steps=None, epochs=None: factory(
                    cbs + [Crash()], steps, epochs
                )
            try:
                return method(round)
            finally:
                loop.trainer_factory = factory

        setattr(loop, phase, wrapped)

    return patch


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted tiny run (entropy, 3 rounds)."""
    tmp = tmp_path_factory.mktemp("ref")
    out = tmp / "run"
    rows = run(tiny_overrides(tmp), out)
    return tmp, out, rows


def test_run_dir_holds_every_file(reference):
    _, out, rows = reference
    assert len(rows) == 3
    for name in ("config.yaml", "state.json", "metrics.csv", "curve.png"):
        assert (out / name).is_file(), name
    for r in range(3):
        assert (out / "labels" / f"round_{r:02d}.npz").is_file()
        assert (out / "selections" / f"round_{r:02d}.csv").is_file()
        assert (out / "overlays" / f"round_{r:02d}.png").is_file()
        assert (out / "histograms" / f"round_{r:02d}.png").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["phase"] == "done" and state["round"] == 2
    metrics = read_csv(out / "metrics.csv")
    assert [int(m["round"]) for m in metrics] == [0, 1, 2]
    assert [float(m["clicks"]) for m in metrics] == [8, 16, 24]
    assert all(0 <= float(m["mIoU"]) <= 100 for m in metrics)
    assert "IoU_road" in metrics[0] and "val_mIoU" in metrics[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["round_01.pt", "round_02.pt"]


def test_budget_respected_and_no_region_labeled_twice(reference):
    _, out, _ = reference
    seen: set[tuple[int, int]] = set()
    for r in range(3):
        rows = read_csv(out / "selections" / f"round_{r:02d}.csv")
        assert sum(float(x["cost"]) for x in rows) <= 8
        keys = {(int(x["image"]), int(x["region"])) for x in rows}
        assert len(keys) == len(rows) and not keys & seen
        seen |= keys
    last = np.load(out / "labels" / "round_02.npz")
    assert (last["round"] >= 0).sum() == len(seen)
    assert np.bincount(last["round"][last["round"] >= 0]).tolist() == [8, 8, 8]


def test_same_seed_same_selections(reference, tmp_path):
    ref_tmp, ref_out, _ = reference
    other = tmp_path / "again"
    run(tiny_overrides(ref_tmp, "active.rounds=2"), other)
    for r in range(2):
        assert read_csv(other / "selections" / f"round_{r:02d}.csv") == read_csv(
            ref_out / "selections" / f"round_{r:02d}.csv"
        )


@pytest.mark.parametrize("phase,at_round", [("fit", 1), ("select", 2)])
def test_killed_run_resumes_to_the_same_result(reference, tmp_path, phase, at_round):
    ref_tmp, ref_out, _ = reference
    out = tmp_path / "killed"
    overrides = tiny_overrides(ref_tmp)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(overrides, out, patch=crash_in(phase, at_round))
    state = json.loads((out / "state.json").read_text())
    assert state["round"] == at_round - 1 if phase == "select" else at_round
    run(overrides, out, resume=True)
    assert read_csv(out / "metrics.csv") == read_csv(ref_out / "metrics.csv")
    a = np.load(out / "labels" / "round_02.npz")
    b = np.load(ref_out / "labels" / "round_02.npz")
    for k in b.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_resume_of_finished_run_changes_nothing(reference):
    _, out, rows = reference
    before = (out / "metrics.csv").read_bytes()
    # `alseg resume` takes the config from the run dir
    loop = build_loop(load_run_config(out), out, resume=True, console=QUIET, progress=False)
    assert loop.run() == [dict(r) for r in read_csv(out / "metrics.csv")]
    assert (out / "metrics.csv").read_bytes() == before


def test_pixel_labels_run(tmp_path):
    rows = run(
        tiny_overrides(tmp_path, "labeling=pixel", "active.rounds=2", "active.strategy=classbal"),
        tmp_path / "px",
    )
    assert len(rows) == 2
    sel = read_csv(tmp_path / "px" / "selections" / "round_01.csv")
    assert {x["answer"] for x in sel} == {"pixels"}


def test_warm_start_run(tmp_path):
    rows = run(
        tiny_overrides(
            tmp_path, "active.reinit=false", "active.rounds=2", "active.strategy=random"
        ),
        tmp_path / "w",
    )
    assert len(rows) == 2


# -- bad input ------------------------------------------------------------------------------
def test_budget_larger_than_pool_fails_before_writing(tmp_path):
    out = tmp_path / "big"
    with pytest.raises(ValueError, match="whole pool costs"):
        run(tiny_overrides(tmp_path, "active.budget=100000"), out)
    assert not out.exists()


def test_existing_run_is_not_overwritten(reference):
    ref_tmp, out, _ = reference
    before = (out / "metrics.csv").read_bytes()
    with pytest.raises(RunDirError, match="already holds a run"):
        run(tiny_overrides(ref_tmp), out)
    assert (out / "metrics.csv").read_bytes() == before


def test_missing_and_corrupt_run_dirs(tmp_path, reference):
    ref_tmp, ref_out, _ = reference
    cfg = compose(tiny_overrides(ref_tmp))
    with pytest.raises(RunDirError, match="does not exist"):
        build_loop(cfg, tmp_path / "nope", resume=True, console=QUIET, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="config.yaml is missing"):
        build_loop(cfg, tmp_path / "empty", resume=True, console=QUIET, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.yaml").write_text((ref_out / "config.yaml").read_text())
    (bad / "state.json").write_text("{not json")
    with pytest.raises(RunDirError, match="state.json is corrupt"):
        build_loop(cfg, bad, resume=True, console=QUIET, progress=False)


def test_corrupt_labels_file_on_resume_is_reported_and_kept(tmp_path, reference):
    import shutil

    ref_tmp, ref_out, _ = reference
    out = tmp_path / "copy"
    shutil.copytree(ref_out, out)
    state = json.loads((out / "state.json").read_text())
    state.update(round=1, phase="fitted")
    (out / "state.json").write_text(json.dumps(state))
    labels = out / "labels" / "round_01.npz"
    labels.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="round_01.npz is corrupt"):
        run(tiny_overrides(ref_tmp), out, resume=True)
    assert labels.read_bytes() == b"\x00" * 64  # nothing overwritten
    assert (out / "metrics.csv").read_bytes() == (ref_out / "metrics.csv").read_bytes()


def test_multiclass_click_accounting_and_stage2(tmp_path):
    out = tmp_path / "mc"
    rows = run(
        tiny_overrides(
            tmp_path,
            "labeling=multiclass",
            "labeling.void_bit=true",
            "active.strategy=pixbal",
            "model.head=cosine",
            "stage2.enabled=true",
        ),
        out,
    )
    assert len(rows) == 3 and all("pseudo_acc" in r for r in rows)
    labels = np.load(out / "labels" / "round_02.npz")
    names = ["road", "sidewalk", "building", "vegetation", "sky", "pole", "sign", "person", "void"]
    for r in range(3):
        sel = read_csv(out / "selections" / f"round_{r:02d}.csv")
        assert sum(float(x["cost"]) for x in sel) <= 8
        for x in sel:  # cost = number of classes answered (void bit included)
            answered = x["answer"].split("|")
            assert set(answered) <= set(names)
            assert float(x["cost"]) == len(answered)
    assert float(rows[-1]["clicks"]) == pytest.approx(float(labels["cost"].sum()))
    pseudo = out / "pseudo_labels" / "round_02"
    assert (pseudo / "manifest.json").is_file() and len(list(pseudo.glob("*.png"))) > 0
    assert (out / "checkpoints" / "round_02_stage2.pt").is_file()


ADAPTIVE = ("active.strategy=adaptive_sizebal", "sieve.enabled=true", "sieve.min_pixels=8")


def test_adaptive_superpixels_accounting_and_files(tmp_path):
    out = tmp_path / "adaptive"
    rows = run(tiny_overrides(tmp_path, *ADAPTIVE), out)
    assert len(rows) == 3 and "sieve_kept_acc" in rows[0]
    labels = np.load(out / "labels" / "round_02.npz")
    for r in (1, 2):
        sel = read_csv(out / "selections" / f"round_{r:02d}.csv")
        by_query: dict[tuple[str, str], list[dict[str, str]]] = {}
        for x in sel:
            by_query.setdefault((x["image"], x["query"]), []).append(x)
        # one click per merged query, on its root row; all its base regions get its answer
        assert sum(float(x["cost"]) for x in sel) == len(by_query) <= 8
        for (_image, q), members in by_query.items():
            assert [x["region"] for x in members if float(x["cost"]) == 1] == [q]
            assert len({x["answer"] for x in members}) == 1
        assert (out / "sieve" / f"round_{r:02d}" / "manifest.json").is_file()
    assert float(rows[-1]["clicks"]) == pytest.approx(float(labels["cost"].sum()))


def test_adaptive_run_killed_in_training_resumes_to_the_same_result(tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "killed"
    overrides = tiny_overrides(tmp_path, *ADAPTIVE)
    run(overrides, ref)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(overrides, out, patch=crash_in("fit", 2))
    run(overrides, out, resume=True)  # the round-1 and round-2 sieves come from the run dir
    assert read_csv(out / "metrics.csv") == read_csv(ref / "metrics.csv")


def test_continuous_schedule_carries_weights_optimizer_and_lr(tmp_path):
    out = tmp_path / "cont"
    extra = (
        "active.schedule=continuous",
        "active.init_steps=5",  # round 0 runs 5 iterations, rounds 1 and 2 three each
        "trainer.max_steps=3",
        "model.lr=0.01",
    )
    run(tiny_overrides(tmp_path, *extra), out)
    import torch

    for r, steps in ((1, 8), (2, 11)):  # one run: the optimizer's step count keeps growing
        opt = torch.load(out / "checkpoints" / f"round_{r:02d}_optimizer.pt", weights_only=True)
        assert {int(s["step"]) for s in opt["state"].values()} == {steps}
    opt = torch.load(out / "checkpoints" / "round_01_optimizer.pt", weights_only=True)
    # one poly schedule over 5 + 3 + 3 steps: lr after step 8 = 0.01 (1 - 8/11)^0.9
    assert opt["param_groups"][0]["lr"] == pytest.approx(0.01 * (1 - 8 / 11) ** 0.9)
    killed = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(tiny_overrides(tmp_path, *extra), killed, patch=crash_in("fit", 2))
    run(tiny_overrides(tmp_path, *extra), killed, resume=True)
    assert read_csv(killed / "metrics.csv") == read_csv(out / "metrics.csv")


def test_a_fit_on_one_image_is_named_not_a_batch_norm_message(tmp_path, capsys):
    """Image tags cost 8 clicks an image here: a round-0 budget of 8 labels one image, whose
    batches of one cannot be batch-normalised after DeepLabV3+'s global pooling."""
    from alseg.cli import main

    args = tiny_overrides(tmp_path, "experiment=image_labels_synthetic", "active.rounds=1")
    assert main(["run", *args, f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "round 0's fit has 1 labeled image for 1 process" in err
    assert "active.init_budget" in err and "Expected more than 1 value" not in err
