"""Instruction data from a local JSON / JSONL file or the Hugging Face hub, read through
``datasets.load_dataset``: Alpaca-style records (``instruction``, an optional ``input``,
``output``) or any field names mapped in ``Fields``.

An example's instruction is the record's instruction, followed by its input (after a blank
line) when the input is not empty, as Alpaca's prompt does. A record without one of the
mapped fields is an error that names the field, the source and the fields it has; a record
with an empty response is an error naming its row, unless ``on_empty="drop"``, which drops
it and counts it. Sequences longer than a model's context are refused when they are
encoded (``alseg.text.lm.encode``). A hub name downloads the data set (for users with
internet; tests and the embedded study read local files or generate their data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alseg.data.datasets import DataError
from alseg.text.instructions import UNKNOWN, Example

ON_EMPTY = ("error", "drop")


@dataclass(frozen=True)
class Fields:
    """Which record fields hold what (None: the data set has no such field).

    Attributes:
        instruction: the task.
        input: its context (Alpaca's ``input``), appended after a blank line when not empty.
        response: the answer the model learns.
        skill: a category per record (e.g. Dolly's ``category``); None: every example's
            skill is ``"all"``.
    """

    instruction: str = "instruction"
    input: str | None = "input"
    response: str = "output"
    skill: str | None = None


@dataclass(frozen=True)
class Loaded:
    """The examples read, and the rows dropped for an empty response (``on_empty="drop"``)."""

    examples: list[Example]
    dropped_empty: list[int]


def _read(source: str, split: str, cache_dir: str | None) -> Any:
    from datasets import load_dataset

    path = Path(source)
    if path.suffix in (".json", ".jsonl"):
        if not path.is_file():
            raise DataError(f"{source}: file not found (a local .json / .jsonl file)")
        return load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
    return load_dataset(source, split=split, cache_dir=cache_dir)


def load_instructions(
    source: str,
    fields: Fields = Fields(),
    split: str = "train",
    on_empty: str = "error",
    limit: int | None = None,
    cache_dir: str | None = None,
) -> Loaded:
    """Examples of ``source`` (a .json / .jsonl path, or a hub name with its ``split``);
    ``cache_dir``: where ``datasets`` keeps its Arrow copy (None: its default cache)."""
    if on_empty not in ON_EMPTY:
        raise ValueError(f"on_empty={on_empty!r} is not valid; choose one of {ON_EMPTY}")
    ds = _read(source, split, cache_dir)
    have = list(ds.column_names)
    wanted = {"instruction": fields.instruction, "response": fields.response}
    if fields.input is not None:
        wanted["input"] = fields.input
    if fields.skill is not None:
        wanted["skill"] = fields.skill
    missing = [f"{role}={name!r}" for role, name in wanted.items() if name not in have]
    if missing:
        raise DataError(
            f"{source} has no field {', '.join(missing)}; its fields are {have} (map them "
            "with instruction=, input=, response=, skill=)"
        )
    examples: list[Example] = []
    dropped: list[int] = []
    for i, row in enumerate(ds):
        if limit is not None and len(examples) >= limit:
            break
        response = str(row[fields.response] or "")
        if not response.strip():
            if on_empty == "drop":
                dropped.append(i)
                continue
            raise DataError(
                f"{source}, row {i}: the response ({fields.response!r}) is empty; fix the "
                "row, or pass on_empty='drop' to drop such rows (they are counted)"
            )
        instruction = str(row[fields.instruction] or "")
        extra = str(row[fields.input] or "") if fields.input is not None else ""
        if extra.strip():
            instruction = f"{instruction}\n\n{extra}"
        skill = str(row[fields.skill]) if fields.skill is not None else "all"
        examples.append(Example(instruction, response, skill, UNKNOWN))
    return Loaded(examples, dropped)
