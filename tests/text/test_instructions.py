"""The embedded instruction set: exact defect rates, answers checked by an independent solver."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from alseg.text.instructions import DEFECTS, SKILLS, UNITS, eval_set, make_instructions


def solve(instruction: str) -> str:
    """A reference solver written from the instruction text alone."""
    if m := re.fullmatch(r"Add (\d+) and (\d+)\.", instruction):
        return str(int(m[1]) + int(m[2]))
    if m := re.fullmatch(r"Sort in ascending order: ([\d ]+)", instruction):
        return " ".join(str(x) for x in sorted(int(t) for t in m[1].split()))
    if m := re.fullmatch(r"Reverse the word: (\w+)", instruction):
        return "".join(reversed(m[1]))
    if m := re.fullmatch(r"How many letters does '(\w+)' have\?", instruction):
        return str(len(m[1]))
    if m := re.fullmatch(r"In the table (.+), what is (\w)\?", instruction):
        return dict(p.split("=") for p in m[1].split("; "))[m[2]]
    if m := re.fullmatch(r"Convert (\d+) (\w+) to (\w+)\.", instruction):
        return str(int(m[1]) * UNITS[(m[2], m[3])])
    raise AssertionError(f"unparsed: {instruction}")


RATES = {"wrong": 0.1, "near_duplicate": 0.05, "garbled": 0.05, "off_task": 0.05, "truncated": 0.05}


def test_defects_hold_the_rates_exactly_and_clean_answers_are_right():
    data = make_instructions(600, RATES, seed=3)
    counts = Counter(e.defect for e in data)
    assert {k: counts[k] for k in DEFECTS} == {k: round(v * 600) for k, v in RATES.items()}
    assert counts["clean"] == 600 - sum(round(v * 600) for v in RATES.values())
    assert Counter(e.skill for e in data) == {s: 100 for s in SKILLS}
    for e in data:
        right = data[e.source].response if e.defect == "near_duplicate" else solve(e.instruction)
        if e.defect in ("clean", "near_duplicate"):
            assert e.response == right, e
        else:
            assert e.response != right and e.response, e
        if e.defect == "truncated":
            assert right.startswith(e.response) and len(e.response) < len(right)
        if e.defect == "near_duplicate":
            src = data[e.source]
            assert src.defect == "clean" and src.skill == e.skill
            assert e.instruction != src.instruction and solve(src.instruction) == e.response
            assert re.sub(r"\s+", " ", e.instruction).lower().strip() == src.instruction.lower()


def test_same_seed_same_set_other_seed_other_set():
    assert make_instructions(50, RATES, seed=1) == make_instructions(50, RATES, seed=1)
    assert make_instructions(50, RATES, seed=1) != make_instructions(50, RATES, seed=2)


def test_eval_set_is_clean_per_skill_and_disjoint_from_training():
    train = make_instructions(300, RATES, seed=0)
    ev = eval_set(20, train, seed=0)
    assert Counter(e.skill for e in ev) == {s: 20 for s in SKILLS}
    assert all(e.defect == "clean" and e.response == solve(e.instruction) for e in ev)
    assert not {e.instruction for e in ev} & {e.instruction for e in train}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rates": {"typo": 0.1}}, "unknown defect 'typo'; valid: wrong"),
        ({"rates": {"wrong": 1.5}}, r"defect rate wrong=1.5 must lie in \[0, 1\]"),
        ({"rates": {"wrong": 0.6, "garbled": 0.6}}, "defect rates sum to 1.2"),
        ({"skills": ["poetry"]}, "unknown skill 'poetry'; valid: add"),
        ({"rates": {"near_duplicate": 1.0}}, "near duplicates need a clean 'add' example to copy"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_instructions(20, **kwargs)
