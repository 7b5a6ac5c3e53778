"""The state machine of a run: the phases a run commits to state.json and what a valid
state.json holds. One module names the phases; everything else uses ``Phase``.

An active-learning round moves ``labeled`` (its labels bought and committed) ->
``fitted`` (its model trained, the checkpoint committed) -> ``evaluated`` (its metrics row
written; the next round's selection may start); the last round ends in ``done``. With
``labeling.oracle=human`` a round whose queries wait for people stops in
``awaiting_answers`` until ``alseg import`` commits their answers (``labeled``). Pruning,
debiasing and pre-training runs commit ``fitted`` (an epoch checkpoint) and ``done``.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any


class Phase(str, Enum):
    """The last phase a run committed to state.json (stored as its value; see the module
    docstring for the order)."""

    LABELED = "labeled"
    FITTED = "fitted"
    EVALUATED = "evaluated"
    DONE = "done"
    AWAITING_ANSWERS = "awaiting_answers"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


PHASES: tuple[str, ...] = tuple(p.value for p in Phase)


def check_state(state: Any, path: Path) -> str | None:
    """What is wrong with ``path``'s parsed state.json (None: nothing): it must be a mapping
    with an integer round >= 0, a known phase, a seed, and a mapping of committed files."""
    if not isinstance(state, dict):
        return f"{path} is corrupt: not a JSON object"
    for key in ("round", "phase", "seed"):
        if key not in state:
            return f"{path} is corrupt: no {key!r}"
    r = state["round"]
    if not isinstance(r, int) or isinstance(r, bool) or r < 0:
        return f"{path} is corrupt: round {r!r} is not an integer >= 0"
    if state["phase"] not in PHASES:
        return f"{path}: phase {state['phase']!r} is not one of {PHASES}"
    if not isinstance(state.get("files", {}), dict):
        return f"{path} is corrupt: 'files' is not a mapping"
    return None
