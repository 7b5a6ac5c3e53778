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

from alseg.build import build_parts
from alseg.cli import main
from alseg.config import load_run_config
from alseg.data.labels import NO_CLASS, LabelStore
from alseg.data.oracle import SimulatedOracle
from alseg.human.queries import load_queries
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
        parts.train.mask, parts.regions, o.num_classes, o.label_type, o.cost_model,
        o.ignore_index, o.void_bit, o.trim_kernel,
    )  # fmt: skip
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
            result.append({"from_name": "class", "to_name": "image", "type": "choices",
                           "value": {"choices": answer_fn(g)}})  # fmt: skip
        for reg in regions:
            g = int(reg["id"][1:])
            result.append({"id": reg["id"], "from_name": "class", "to_name": "image",
                           "type": "choices", "value": {"choices": answer_fn(g)}})  # fmt: skip
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
    bad = export[0]["annotations"][0]["result"]
    choices = [r for r in bad if r["from_name"] == "class"]
    choices[0]["value"]["choices"] = ["tree"]  # not a class
    if len(choices) > 1:
        choices[1]["value"]["choices"] = ["road", "sky"]  # two answers to one choice
    bad.append({"id": "q999999", "from_name": "class", "to_name": "image", "type": "choices",
                "value": {"choices": ["road"]}})  # fmt: skip
    export.append({"id": 7, "data": {"alseg_round": 3, "alseg_image": 0}, "annotations": []})
    (tmp_path / "bad.json").write_text(json.dumps(export))
    assert main(["import", str(out), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "'tree' is not a class of this run (valid: road" in err
    assert "task 7: not a task of round 0 of this run (alseg_round=3)" in err
    assert "region q999999 is not a query of image" in err
    if len(choices) > 1:
        assert "2 answers (road, sky) to a one-choice question" in err
    q = load_queries(RunDir(out), 0)
    wrong = 2 if len(choices) > 1 else 1
    assert len(q.answered) == len(q.queries) - wrong  # the valid ones are committed
    assert _state(out)["phase"] == "awaiting_answers"
    assert main(["import", str(out)]) == 2  # neither a file nor --from label-studio
    assert "give the answers: a JSON export file, or --from label-studio" in capsys.readouterr().err
    assert main(["import", str(out), "--from", "label-studio"]) == 2  # never uploaded
    assert "was not exported to a server" in capsys.readouterr().err


def test_human_oracle_config_errors(tmp_path):
    from alseg.config import ConfigError, compose

    with pytest.raises(ConfigError, match="labeling.oracle=human cannot run labeling=pixel"):
        compose(["labeling=pixel", "labeling.oracle=human"])
    out = tmp_path / "sim"
    assert main(["run", *tiny_overrides(tmp_path, "active.rounds=1"), f"run_dir={out}"]) == 0
    assert main(["export", str(out)]) == 2  # a finished simulated run waits for nothing
