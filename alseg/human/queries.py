"""The queries of a round that wait for people's answers: ``queries/round_XX.json`` in the
run dir (committed with a checksum, like every run-dir file).

    {"round": r, "label_type": "dominant" | "multiclass" | "image" | "pixel",
     "classes": [names], "void_bit": bool,
     "queries": [{"id": global region id, "image": i, "region": local id,
                  "score": s, "predicted": class name or ""}],
     "answered": [global region ids already imported],
     "run_id": the run's id (state.json), which its exported tasks carry}
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alseg.data.labels import Annotations
from alseg.rundir import RunDir, RunDirError
from alseg.state import Phase


@dataclass
class QueryRound:
    round: int
    label_type: str
    classes: list[str]
    void_bit: bool
    queries: list[dict[str, Any]]
    answered: list[int] = field(default_factory=list)
    run_id: str = ""  # "": a round of a run dir older than run ids (not checked)

    @property
    def pending(self) -> list[dict[str, Any]]:
        done = set(self.answered)
        return [q for q in self.queries if q["id"] not in done]

    def by_id(self) -> dict[int, dict[str, Any]]:
        return {int(q["id"]): q for q in self.queries}

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__, indent=1).encode()

    @classmethod
    def from_annotations(
        cls,
        r: int,
        ann: Annotations,
        regions: Any,
        label_type: str,
        classes: list[str],
        void_bit: bool,
        run_id: str = "",
    ) -> QueryRound:
        images, local = regions.split_ids(ann.region_ids)
        pred = ann.predicted if ann.predicted is not None else np.full(len(ann.region_ids), -1)
        queries = [
            {
                "id": int(g),
                "image": int(i),
                "region": int(lo),
                "score": float(s),
                "predicted": classes[p] if 0 <= p < len(classes) else "",
            }
            for g, i, lo, s, p in zip(ann.region_ids, images, local, ann.scores, pred)
        ]
        return cls(r, label_type, list(classes), void_bit, queries, run_id=run_id)


def queries_path(rundir: RunDir, r: int) -> Path:
    return rundir.path / "queries" / f"round_{r:02d}.json"


def save_queries(rundir: RunDir, q: QueryRound) -> None:
    rundir.write_file(queries_path(rundir, q.round), q.to_bytes())


def load_queries(rundir: RunDir, r: int) -> QueryRound:
    path = queries_path(rundir, r)
    try:
        return QueryRound(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise RunDirError(f"{path} is missing or corrupt ({e})") from e


def awaiting_round(rundir: RunDir) -> int:
    """The round whose queries wait for answers; a clear error when the run waits for none."""
    state = rundir.check()
    if state.phase != Phase.AWAITING_ANSWERS:
        raise RunDirError(
            f"{rundir.path} is not waiting for answers (it is after round {state.round} "
            f"phase '{state.phase}'); runs with labeling.oracle=human stop after each "
            "selection"
        )
    return state.round
