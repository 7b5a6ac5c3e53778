"""The state machine of a run: the phases a run commits to state.json and what a valid
state.json holds. One module names the phases; everything else uses ``Phase``.

An active-learning round moves ``labeled`` (its labels bought and committed) ->
``fitted`` (its model trained, the checkpoint committed) -> ``evaluated`` (its metrics row
written; the next round's selection may start); the last round ends in ``done``. With
``labeling.oracle=human`` a round whose queries wait for people stops in
``awaiting_answers`` until ``alseg import`` commits their answers (``labeled``). Pruning,
debiasing and pre-training runs commit ``fitted`` (an epoch checkpoint) and ``done``.

``RunState`` is state.json as a typed object: ``RunDir.read_state`` returns one (checked
by ``check_state``) and ``RunDir.write_state`` takes one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


_KNOWN = ("round", "phase", "seed", "task", "config", "run_id", "wandb_id", "spent", "files")


@dataclass
class RunState:
    """A run's state.json. ``phase`` None: nothing committed yet (a run before round 0's
    labels); fields left None are not written."""

    round: int = 0
    phase: Phase | None = None
    seed: int = 0
    task: str | None = None  # the one-shot tasks name theirs (debias, prune, pretrain)
    config: str | None = None  # the config YAML the run (last) resumed with
    run_id: str | None = None  # the run's identity, carried by people's answers (alseg.human)
    wandb_id: str | None = None  # the W&B run to continue on resume
    spent: float | None = None  # clicks bought so far (active-learning runs)
    files: dict[str, str] = field(default_factory=dict)  # committed files -> sha256
    extra: dict[str, Any] = field(default_factory=dict)  # the rest (e.g. config_changes)

    @classmethod
    def from_dict(cls, state: dict[str, Any], path: Path) -> RunState:
        """A parsed state.json, checked (``check_state``: ValueError naming ``path``)."""
        problem = check_state(state, path)
        if problem:
            raise ValueError(problem)
        return cls(
            round=int(state["round"]),
            phase=Phase(state["phase"]),
            seed=int(state["seed"]),
            task=state.get("task"),
            config=state.get("config"),
            run_id=state.get("run_id"),
            wandb_id=state.get("wandb_id"),
            spent=state.get("spent"),
            files={str(k): str(v) for k, v in state.get("files", {}).items()},
            extra={k: v for k, v in state.items() if k not in _KNOWN},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of state.json (a run that committed nothing has no state.json)."""
        if self.phase is None:
            raise ValueError("a run state without a phase is not written (nothing committed)")
        out: dict[str, Any] = {"round": self.round, "phase": self.phase.value, "seed": self.seed}
        for key in ("task", "config", "run_id", "wandb_id", "spent"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return {**out, "files": dict(self.files), **self.extra}
