"""state.json as a typed object (alseg.state.RunState): a file that older code wrote reads
and writes back byte for byte, its task's own entries kept; bad states are named."""

from __future__ import annotations

import json

import pytest

from alseg.rundir import RunDir, RunDirError
from alseg.state import Phase, RunState

WRITTEN = {  # an active run's state.json as alseg wrote it before RunState
    "config": "seed: 0\n",
    "config_changes": [{"keys": ["trainer.max_epochs"], "round": 2}],
    "files": {"labels/round_00.npz": "ab12"},
    "phase": "awaiting_answers",
    "round": 3,
    "run_id": "f00d",
    "seed": 7,
    "spent": 312.5,
    "wandb_id": "w123",
}


def test_a_written_state_reads_typed_and_writes_back_the_same_bytes(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    text = json.dumps(WRITTEN, indent=2, sort_keys=True) + "\n"
    rd.state_path.write_text(text)
    state = rd.read_state()
    assert (state.round, state.phase, state.seed) == (3, Phase.AWAITING_ANSWERS, 7)
    assert state.spent == 312.5
    assert (state.run_id, state.wandb_id, state.config) == ("f00d", "w123", "seed: 0\n")
    assert state.extra == {"config_changes": WRITTEN["config_changes"]}
    assert rd.files == {"labels/round_00.npz": "ab12"}
    rd.write_state(state)
    assert rd.state_path.read_text() == text


def test_unset_fields_are_not_written_and_a_state_without_a_phase_is_refused():
    assert RunState(round=0, phase=Phase.DONE, seed=1, task="prune").to_dict() == {
        "round": 0,
        "phase": "done",
        "seed": 1,
        "task": "prune",
        "files": {},
    }
    with pytest.raises(ValueError, match="without a phase"):
        RunState(config="x").to_dict()


@pytest.mark.parametrize(
    "state, message",
    [
        ({"round": 0, "seed": 0}, "no 'phase'"),
        ({"round": -1, "phase": "done", "seed": 0}, "round -1 is not an integer >= 0"),
        ({"round": 0, "phase": "trained", "seed": 0}, "phase 'trained' is not one of"),
    ],
)
def test_bad_states_are_named(tmp_path, state, message):
    rd = RunDir(tmp_path / "run")
    rd.path.mkdir()
    rd.state_path.write_text(json.dumps(state))
    with pytest.raises(RunDirError, match=message):
        rd.read_state()
