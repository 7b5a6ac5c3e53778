"""Instruction data through ``datasets.load_dataset`` on local files the tests write
(nothing is downloaded; skipped without the llm extra)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("datasets", reason='the llm extra is not installed (pip install -e ".[llm]")')

from alseg.data.datasets import DataError  # noqa: E402
from alseg.text.hf_data import Fields, load_instructions  # noqa: E402
from alseg.text.instructions import Example  # noqa: E402

ALPACA = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"instruction": "Summarise the text.", "input": "Cats sleep a lot.", "output": "Cats nap."},
    {"instruction": "Reverse the word: cat", "input": "", "output": "tac"},
]


def load(tmp_path, *args, **kwargs):
    """load_instructions with the datasets cache in the test's folder."""
    return load_instructions(*args, cache_dir=str(tmp_path / "hf-cache"), **kwargs)


def jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_alpaca_records_become_examples_with_their_input_after_a_blank_line(tmp_path):
    got = load(tmp_path, str(jsonl(tmp_path / "a.jsonl", ALPACA)))
    assert got.examples == [
        Example("Add 2 and 3.", "5", "all", "unknown"),
        Example("Summarise the text.\n\nCats sleep a lot.", "Cats nap.", "all", "unknown"),
        Example("Reverse the word: cat", "tac", "all", "unknown"),
    ]  # a file's defects are not known
    assert got.dropped_empty == []
    # a JSON list reads the same; limit keeps the first records
    path = tmp_path / "a.json"
    path.write_text(json.dumps(ALPACA))
    assert load(tmp_path, str(path), limit=2).examples == got.examples[:2]


def test_mapped_fields_and_a_skill_column(tmp_path):
    rows = [
        {"prompt": "Name a colour.", "answer": "red", "category": "open_qa"},
        {"prompt": "Add 1 and 1.", "answer": "2", "category": "math"},
    ]
    fields = Fields(instruction="prompt", input=None, response="answer", skill="category")
    got = load(tmp_path, str(jsonl(tmp_path / "d.jsonl", rows)), fields)
    assert [(e.instruction, e.response, e.skill) for e in got.examples] == [
        ("Name a colour.", "red", "open_qa"),
        ("Add 1 and 1.", "2", "math"),
    ]


def test_bad_input_is_named(tmp_path):
    path = jsonl(tmp_path / "x.jsonl", [{"instruction": "Hi", "response": "Hello"}])
    with pytest.raises(DataError, match=r"no field response='output'.*'instruction', 'response'"):
        load(tmp_path, str(path))
    empty = [*ALPACA[:1], {"instruction": "Say nothing.", "input": "", "output": "  "}, ALPACA[2]]
    path = jsonl(tmp_path / "e.jsonl", empty)
    with pytest.raises(DataError, match=r"row 1: the response \('output'\) is empty"):
        load(tmp_path, str(path))
    got = load(tmp_path, str(path), on_empty="drop")
    assert got.dropped_empty == [1] and [e.response for e in got.examples] == ["5", "tac"]
    with pytest.raises(DataError, match="file not found"):
        load(tmp_path, str(tmp_path / "none.jsonl"))
    with pytest.raises(ValueError, match="on_empty='skip' is not valid"):
        load(tmp_path, str(path), on_empty="skip")


def test_a_sequence_longer_than_the_context_is_refused_when_encoded(tmp_path):
    from alseg.text.lm import encode, train_tokenizer

    long = [{"instruction": "Repeat.", "input": "", "output": "word " * 200}]
    examples = load(tmp_path, str(jsonl(tmp_path / "l.jsonl", long))).examples
    tok = train_tokenizer([f"{e.instruction} {e.response}" for e in examples])
    with pytest.raises(ValueError, match="longer than the model's context of 64"):
        encode(tok, examples, context=64)
