"""People in the loop (labeling.oracle=human): the run stops at awaiting_answers, the
queries go out as Label Studio tasks, answers (written here from ground truth, as an
annotator would give them) come back through Label Studio's export format, partial and bad
answers are handled, and the LabelStore equals what the simulated oracle would produce."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from helpers import tiny_overrides

from alseg.cli import main
from alseg.config import load_run_config
from alseg.data.labels import NO_CLASS, LabelStore
from alseg.data.oracle import SimulatedOracle
from alseg.human.queries import load_queries
from alseg.parts import build_parts
from alseg.rundir import RunDir


def _state(run_dir):
    return json.loads((run_dir / "state.json").read_text())


def _truth(run_dir):
    """The simulated oracle of the run's data: what an annotator who knows the ground
    truth answers."""
    cfg = load_run_config(run_dir)
    parts = build_parts(cfg, progress=False)
    o = parts.oracle
    sim = SimulatedOracle(
        parts.train.mask,
        parts.regions,
        o.num_classes,
        o.label_type,
        o.cost_model,
        o.ignore_index,
        o.void_bit,
        o.trim_kernel,
    )
    return sim, list(parts.train.class_names)


def _names(sim, names, g):
    ann = sim.annotate(np.array([g]))
    if ann.bits is not None:
        return [(names + ["void"])[k] for k in np.flatnonzero(ann.bits[0])]
    c = int(ann.classes[0])
    return ["void"] if c == NO_CLASS else [names[c]]


def _answer(tasks, answer_fn, image_query=None):
    """Label Studio's JSON export of ``tasks`` after an annotator answered each region (or,
    ``image_query``: image -> its query, each image)."""
    out = []
    for k, task in enumerate(tasks):
        regions = task["predictions"][0]["result"]
        result = list(regions)
        if image_query is not None:
            g = image_query[task["data"]["alseg_image"]]
            result.append(
                {
                    "from_name": "class",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": answer_fn(g)},
                }
            )
        for reg in regions:
            g = int(reg["id"][1:])
            result.append(
                {
                    "id": reg["id"],
                    "from_name": "class",
                    "to_name": "image",
                    "type": "choices",
                    "value": {"choices": answer_fn(g)},
                }
            )
        out.append({"id": 100 + k, "data": task["data"], "annotations": [{"result": result}]})
    return out


@pytest.mark.parametrize("labeling", ["dominant", "multiclass", "image"])
def test_round_trip_equals_the_simulated_oracle(tmp_path, labeling, capsys):
    out = tmp_path / "run"
    extra = {
        "dominant": [],
        "multiclass": ["labeling.void_bit=true", "active.budget=18"],
        "image": ["regions.method=image", "active.budget=16", "data.num_train=24"],
    }[labeling]
    args = tiny_overrides(tmp_path, f"labeling={labeling}", "labeling.oracle=human", *extra)
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert _state(out)["phase"] == "awaiting_answers" and _state(out)["round"] == 0
    assert "queries wait for answers" in capsys.readouterr().out
    q = load_queries(RunDir(out), 0)
    assert q.queries and not q.answered

    assert main(["resume", str(out)]) == 0  # before any answer: it says what to do, stops
    assert "queries wait for answers" in capsys.readouterr().out
    assert main(["export", str(out)]) == 0
    folder = out / "export" / "round_00"
    tasks = json.loads((folder / "tasks.json").read_text())
    ET.fromstring((folder / "label_config.xml").read_text())  # well-formed
    regions = sum(len(t["predictions"][0]["result"]) for t in tasks)
    assert regions == (0 if labeling == "image" else len(q.queries))
    assert all(t["data"]["image"].startswith("data:image/png;base64,") for t in tasks)

    sim, names = _truth(out)
    by_image = {int(x["image"]): int(x["id"]) for x in q.queries} if labeling == "image" else None
    export = _answer(tasks, lambda g: _names(sim, names, g), by_image)
    # 1. a partial import: the first task only
    (tmp_path / "part.json").write_text(json.dumps(export[:1]))
    assert main(["import", str(out), str(tmp_path / "part.json")]) == 0
    first = 1 if labeling == "image" else len(export[0]["annotations"][0]["result"]) // 2
    q = load_queries(RunDir(out), 0)
    assert len(q.answered) == first and len(q.pending) == len(q.queries) - first
    assert _state(out)["phase"] == "awaiting_answers"
    assert main(["resume", str(out)]) == 0  # nothing to train yet: it says so and stops
    assert _state(out)["phase"] == "awaiting_answers"
    # 2. everything: the first task again is not paid twice
    (tmp_path / "all.json").write_text(json.dumps(export))
    assert main(["import", str(out), str(tmp_path / "all.json")]) == 0
    err = capsys.readouterr().err
    assert "already imported; ignored (nothing is paid twice)" in err
    assert _state(out)["phase"] == "labeled"

    store = LabelStore.from_file(out / "labels" / "round_00.npz", sim.regions.total, len(names))
    ids = np.array(sorted(int(x["id"]) for x in q.queries))
    ref = sim.annotate(ids)
    assert (store.round[ids] == 0).all() and int((store.round >= 0).sum()) == ids.size
    assert store.cls[ids].tolist() == ref.classes.tolist()
    assert store.cost[ids].tolist() == ref.costs.tolist()
    if ref.bits is not None:
        assert (store.answer_bits(ids)[:, : ref.bits.shape[1]] == ref.bits).all()
    assert _state(out)["spent"] == pytest.approx(float(ref.costs.sum()))
    # 3. resume trains round 0 and stops at round 1's queries
    assert main(["resume", str(out)]) == 0
    assert _state(out)["phase"] == "awaiting_answers" and _state(out)["round"] == 1
    assert len((out / "metrics.csv").read_text().splitlines()) == 2


def test_bad_answers_are_named_and_valid_ones_kept(tmp_path, capsys):
    out = tmp_path / "run"
    args = tiny_overrides(tmp_path, "labeling.oracle=human")
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert main(["export", str(out)]) == 0
    tasks = json.loads((out / "export" / "round_00" / "tasks.json").read_text())
    sim, names = _truth(out)
    export = _answer(tasks, lambda g: _names(sim, names, g))
    # the task with the most regions: one unknown class, one double answer
    bad = max((t["annotations"][0]["result"] for t in export), key=len)
    choices = [r for r in bad if r["from_name"] == "class"]
    assert len(choices) >= 2
    choices[0]["value"]["choices"] = ["tree"]  # not a class
    choices[1]["value"]["choices"] = ["road", "sky"]  # two answers to one choice
    bad.append(
        {
            "id": "q999999",
            "from_name": "class",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": ["road"]},
        }
    )
    export.append({"id": 7, "data": {"alseg_round": 3, "alseg_image": 0}, "annotations": []})
    (tmp_path / "bad.json").write_text(json.dumps(export))
    assert main(["import", str(out), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "'tree' is not a class of this run (valid: road" in err
    assert "task 7: not a task of round 0 of this run (alseg_round=3)" in err
    assert "region q999999 is not a query of image" in err
    assert "2 answers (road, sky) to a one-choice question" in err
    q = load_queries(RunDir(out), 0)
    assert len(q.answered) == len(q.queries) - 2  # the valid ones are committed
    assert _state(out)["phase"] == "awaiting_answers"
    assert main(["import", str(out)]) == 2  # neither a file nor --from label-studio
    assert "give the answers: a JSON export file, or --from label-studio" in capsys.readouterr().err
    assert main(["import", str(out), "--from", "label-studio"]) == 2  # never uploaded
    assert "was not exported to a server" in capsys.readouterr().err


def test_human_oracle_config_errors(tmp_path):
    from alseg.config import ConfigError, compose

    with pytest.raises(ConfigError, match="labeling.oracle=human cannot run sieve.enabled=true"):
        compose(["sieve.enabled=true", "labeling.oracle=human"])
    out = tmp_path / "sim"
    assert main(["run", *tiny_overrides(tmp_path, "active.rounds=1"), f"run_dir={out}"]) == 0
    assert main(["export", str(out)]) == 2  # a finished simulated run waits for nothing


# -- pixel answers: brush masks -------------------------------------------------------------------
def test_brush_rle_known_answers():
    from alseg.human.rle import brush_mask, decode, mask_rle

    mask = np.zeros((5, 7), bool)
    mask[1:4, 2:6] = True
    mask[4, 0] = True
    # label_studio_sdk.converter.brush.mask2rle of this mask (Label Studio's own encoder)
    reference = [
        0,
        0,
        0,
        140,
        57,
        27,
        254,
        35,
        0,
        191,
        255,
        108,
        2,
        255,
        253,
        176,
        11,
        255,
        241,
        128,
        71,
        255,
        133,
        192,
        0,
    ]
    assert (brush_mask(reference, 5, 7) == mask).all()
    assert mask_rle(mask) == reference
    # literal records, by hand: 3 values, word 8, widths 3/4/8/16; one literal run of 3
    bits = f"{3:032b}" + f"{7:05b}" + "0010001101110000" + "0" + "00" + "010"
    bits += "".join(f"{v:08b}" for v in (5, 250, 7))
    bits += "0" * (-len(bits) % 8)
    rle = [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    assert decode(rle).tolist() == [5, 250, 7]
    with pytest.raises(ValueError, match="for an image of 5x8"):
        brush_mask(reference, 5, 8)


def _paint(tasks, q, truth_fn, region_fn, names):
    """An export where every queried region is painted from ground truth: one brush
    stroke per class present (void pixels left unpainted)."""
    from alseg.human.rle import mask_rle

    out = []
    for k, task in enumerate(tasks):
        index = task["data"]["alseg_image"]
        regions = task["predictions"][0]["result"]
        gt, rmap = truth_fn(index), region_fn(index)
        asked = np.isin(rmap, [q.by_id()[int(r["id"][1:])]["region"] for r in regions])
        result = list(regions)
        for c in np.unique(gt[asked]):
            if c != 255:
                value = {
                    "format": "rle",
                    "rle": mask_rle(asked & (gt == c)),
                    "brushlabels": [names[c]],
                }
                result.append(
                    {
                        "from_name": "class",
                        "to_name": "image",
                        "type": "brushlabels",
                        "value": value,
                    }
                )
        out.append({"id": 200 + k, "data": task["data"], "annotations": [{"result": result}]})
    return out


def test_pixel_answers_painted_with_brushes(tmp_path, capsys):
    """Painted from ground truth, pixel answers train on exactly the simulated targets;
    a stroke outside the queried regions is named, an unpainted region stays pending."""
    from alseg.human.rle import mask_rle
    from alseg.human.transfer import PaintedLabels

    out = tmp_path / "run"
    args = tiny_overrides(tmp_path, "labeling=pixel", "labeling.oracle=human")
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert main(["export", str(out)]) == 0
    folder = out / "export" / "round_00"
    assert "<BrushLabels" in (folder / "label_config.xml").read_text()
    tasks = json.loads((folder / "tasks.json").read_text())
    q = load_queries(RunDir(out), 0)
    cfg = load_run_config(out)
    parts = build_parts(cfg, progress=False)
    names = list(parts.train.class_names)
    truth = lambda i: parts.train.mask(i).numpy()  # noqa: E731
    rmaps = lambda i: parts.regions.map_tensor(i).numpy()  # noqa: E731
    export = _paint(tasks, q, truth, rmaps, names)
    # the first task: one region left unpainted, and a stroke outside the queried regions
    first = export[0]["annotations"][0]["result"]
    index0 = tasks[0]["data"]["alseg_image"]
    skipped = q.by_id()[int(first[0]["id"][1:])]["region"]
    for res in first:
        if res["type"] == "brushlabels":
            from alseg.human.rle import brush_mask

            m = brush_mask(res["value"]["rle"], *rmaps(index0).shape) & (rmaps(index0) != skipped)
            res["value"]["rle"] = mask_rle(m)
    stray = np.zeros(rmaps(index0).shape, bool)
    stray[
        np.isin(
            rmaps(index0), [x["region"] for x in q.queries if x["image"] == index0], invert=True
        )
    ] = True
    first.append(
        {
            "from_name": "class",
            "to_name": "image",
            "type": "brushlabels",
            "value": {"format": "rle", "rle": mask_rle(stray), "brushlabels": ["road"]},
        }
    )
    (tmp_path / "a.json").write_text(json.dumps(export))
    assert main(["import", str(out), str(tmp_path / "a.json")]) == 2
    err = capsys.readouterr().err
    assert f"stroke paints {int(stray.sum())} pixels outside the queried regions" in err
    assert f"region {skipped}: nothing painted (stays pending)" in err
    q = load_queries(RunDir(out), 0)
    assert len(q.pending) == 1
    # the missing region, painted in a second export: the round is complete
    export = _paint(tasks[:1], q, truth, rmaps, names)
    (tmp_path / "b.json").write_text(json.dumps(export))
    assert main(["import", str(out), str(tmp_path / "b.json")]) == 0
    assert _state(out)["phase"] == "labeled"
    painted = PaintedLabels(out)
    for x in q.queries:
        region = rmaps(x["image"]) == x["region"]
        got = painted(x["image"]).numpy()[region]
        assert (got == truth(x["image"])[region]).all()  # void stays 255 in both
    store = LabelStore.from_file(out / "labels" / "round_00.npz", parts.regions.total, len(names))
    ids = np.array(sorted(x["id"] for x in q.queries))
    from alseg.data.labels import DENSE

    assert (store.region_targets()[ids] == DENSE).all()  # pixel answers: their pixels train
    assert store.cost[ids].tolist() == [1.0] * ids.size
    assert main(["resume", str(out)]) == 0  # trains on the painted pixels
    assert _state(out)["round"] == 1 and _state(out)["phase"] == "awaiting_answers"


def test_folder_layout_round_trip(tmp_path):
    """People answer queries on a user's own folder of photographs (images of several
    sizes): tasks carry each image at its own size and the answers import."""
    from layout_fixtures import photo_folder_tree

    root = photo_folder_tree(tmp_path / "photos", {"train": 6, "val": 2, "test": 2})
    out = tmp_path / "run"
    args = [
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.class_names=[dark,mid,bright]",
        "data.crop_size=[32,48]",
        "data.batch_size=2",
        "data.pool_batch_size=1",
        "regions.n_segments=16",
        f"regions.cache_dir={tmp_path / 'c'}",
        "regions.num_workers=1",
        "active.rounds=2",
        "active.budget=6",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "labeling.oracle=human",
    ]
    assert main(["run", *args, f"run_dir={out}"]) == 0
    assert main(["export", str(out)]) == 0
    tasks = json.loads((out / "export" / "round_00" / "tasks.json").read_text())
    sim, names = _truth(out)
    cfg = load_run_config(out)
    train = build_parts(cfg, progress=False).train
    for t in tasks:  # the image at its own size, the outlines inside it
        i = t["data"]["alseg_image"]
        h, w = train[i]["image"].shape[-2:]
        reg = t["predictions"][0]["result"][0]
        assert (reg["original_height"], reg["original_width"]) == (h, w)
        assert all(0 <= x <= 100 and 0 <= y <= 100 for x, y in reg["value"]["points"])
    (tmp_path / "a.json").write_text(json.dumps(_answer(tasks, lambda g: _names(sim, names, g))))
    assert main(["import", str(out), str(tmp_path / "a.json")]) == 0
    assert _state(out)["phase"] == "labeled"
    assert main(["resume", str(out)]) == 0
    assert _state(out)["round"] == 1


class Killed(BaseException):
    """A kill of the process at a chosen point (no cleanup runs, as with SIGKILL)."""


def test_import_killed_at_any_point_of_its_commit_can_be_imported_again(
    tmp_path, monkeypatch, capsys
):
    """A kill at every file replacement of `alseg import` leaves a run dir that a second
    import of the same answers completes, ending as an uninterrupted import does; `alseg
    resume` then trains. (Before imports committed as one transaction, a kill after the
    labels file and before state.json made every later import fail with "regions already
    labeled cannot be labeled again".)"""
    import os
    import shutil

    waiting = tmp_path / "run"
    args = tiny_overrides(tmp_path, "labeling.oracle=human")
    assert main(["run", *args, f"run_dir={waiting}"]) == 0
    assert main(["export", str(waiting)]) == 0
    tasks = json.loads((waiting / "export" / "round_00" / "tasks.json").read_text())
    sim, names = _truth(waiting)
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(_answer(tasks, lambda g: _names(sim, names, g))))
    done = tmp_path / "done"
    shutil.copytree(waiting, done)
    assert main(["import", str(done), str(answers)]) == 0
    committed = ("labels/round_00.npz", "selections/round_00.csv", "queries/round_00.json")
    expected = {rel: (done / rel).read_bytes() for rel in committed}

    replace, k = os.replace, 0
    while True:
        k += 1
        run = tmp_path / f"killed{k}"
        shutil.copytree(waiting, run)
        calls = 0

        def killing_replace(src, dst, _k=k):
            nonlocal calls
            calls += 1
            if calls == _k:
                raise Killed
            return replace(src, dst)

        monkeypatch.setattr(os, "replace", killing_replace)
        try:
            main(["import", str(run), str(answers)])
            killed = False
        except Killed:
            killed = True
        monkeypatch.setattr(os, "replace", replace)
        if not killed:
            break  # past the last replacement: an uninterrupted import
        capsys.readouterr()
        assert main(["import", str(run), str(answers)]) == 0, capsys.readouterr().err
        assert _state(run)["phase"] == "labeled"
        assert {rel: (run / rel).read_bytes() for rel in committed} == expected, k
    assert k > 3  # the commit replaces several files
    assert main(["resume", str(run)]) == 0  # the last copy trains round 0
    assert _state(run)["round"] == 1


def test_answers_of_another_run_are_refused_whatever_their_queries(tmp_path, capsys):
    """Two runs of one config ask the same queries; the answers to one run's tasks are
    not the other's (they were given for its images, its round, its people)."""
    args = tiny_overrides(tmp_path, "labeling.oracle=human")
    a, b = tmp_path / "a", tmp_path / "b"
    for run in (a, b):
        assert main(["run", *args, f"run_dir={run}"]) == 0
        assert main(["export", str(run)]) == 0
    tasks_b = json.loads((b / "export" / "round_00" / "tasks.json").read_text())
    tasks_a = json.loads((a / "export" / "round_00" / "tasks.json").read_text())
    assert [t["predictions"] for t in tasks_a] == [t["predictions"] for t in tasks_b]
    sim, names = _truth(b)
    answers = tmp_path / "b.json"
    answers.write_text(json.dumps(_answer(tasks_b, lambda g: _names(sim, names, g))))
    capsys.readouterr()
    assert main(["import", str(a), str(answers)]) == 2
    err = capsys.readouterr().err
    assert f"a task of another run ({b.name!r}" in err and "import it into that run" in err
    assert not load_queries(RunDir(a), 0).answered and _state(a)["phase"] == "awaiting_answers"
    assert main(["import", str(b), str(answers)]) == 0  # its own run takes them


def test_malformed_tasks_are_named_and_nothing_is_committed(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *tiny_overrides(tmp_path, "labeling.oracle=human"), f"run_dir={run}"]) == 0
    rid = _state(run)["run_id"]
    export = [
        {"id": 1, "data": "x"},
        {"id": 2, "data": {"alseg_round": 0, "alseg_image": "../../etc/passwd"}},
        "garbage",
        {"id": 3, "data": {"alseg_round": 0, "alseg_image": 0, "alseg_run_id": "other"}},
    ]
    export[1]["data"]["alseg_run_id"] = rid
    (tmp_path / "bad.json").write_text(json.dumps(export))
    assert main(["import", str(run), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "task 1: its 'data' is not an object ('x')" in err
    assert "task 2: data.alseg_image='../../etc/passwd' is not an image index" in err
    assert "a task is not a JSON object: 'garbage'" in err
    assert "task 3: a task of another run" in err
    assert not load_queries(RunDir(run), 0).answered
