"""Run directory: the resumable state of one experiment, written atomically.

Layout::

    runs/<name>/
      config.yaml              resolved config
      state.json               round, phase, clicks spent, seed, W&B id, the config the run
                               started with, and a SHA-256 of every committed file
      labels/round_XX.npz      LabelStore after the labels of round XX were committed
      selections/round_XX.csv  image, region, score, cost, answer, predicted class
      checkpoints/round_XX.pt  model weights after round XX's fit (weights only)
      metrics.csv              one row per evaluated round
      curve.png                mIoU vs clicks
      <folder>/round_XX/       per-image label maps of a method (pseudo labels, sieve
                               masks) with their manifest.json (file checksums, stats)
      .lock                    held by the process that writes the run dir
      .commit/                 a commit of several files in progress (``transaction``)

Files are committed as ``alseg.commits`` describes (atomic, checksummed, one writer,
transactions).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from alseg.atomic import (
    atomic_write_bytes,
    atomic_write_text,
    buffered,
    csv_text,
    sha256_bytes,
    sha256_file,
)
from alseg.commits import MANIFEST, PARTIAL, CommittedFolder, RunDirError
from alseg.state import RunState
from alseg.tasks import recorded_task

# What alseg writes into a run dir: removed when a run that never committed round 0 starts
# again in the same folder (anything else there is the user's and stays).
OWNED = (
    "config.yaml",
    "state.json",
    "metrics.csv",
    "curve.png",
    "labels",
    "selections",
    "checkpoints",
    "overlays",
    "histograms",
    "wandb",
    "pseudo_labels",
    "sieve",
    "label_dist",
    "results.json",  # debiasing runs (alseg.debias.run)
    "weights.parquet",
)


def _torch_bytes(obj: Any) -> bytes:
    return buffered(lambda f: torch.save(obj, f))


class RunDir(CommittedFolder):
    """What one run directory holds (the layout above) and how a run reads and commits it:
    its config, state, rounds, metrics, per-image map folders and checkpoints."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.state = RunState()  # what the loop continues from (see alseg.build)

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def curve_path(self) -> Path:
        return self.path / "curve.png"

    def labels_path(self, r: int) -> Path:
        return self.path / "labels" / f"round_{r:02d}.npz"

    def selections_path(self, r: int) -> Path:
        return self.path / "selections" / f"round_{r:02d}.csv"

    def checkpoint_path(self, r: int, stage: int = 1) -> Path:
        suffix = "" if stage == 1 else f"_stage{stage}"
        return self.path / "checkpoints" / f"round_{r:02d}{suffix}.pt"

    def optimizer_path(self, r: int) -> Path:
        return self.path / "checkpoints" / f"round_{r:02d}_optimizer.pt"

    def round_folder(self, kind: str, r: int) -> Path:
        """A folder of per-image label maps of round ``r`` (``kind``: pseudo_labels, sieve)."""
        return self.path / kind / f"round_{r:02d}"

    # -- creation and validation ---------------------------------------------------------
    def create(self, config_yaml: str) -> bool:
        """Start a new run (call with the lock held). Refuses a folder that holds a run; a
        run that stopped before committing round 0 is removed and started afresh (only the
        files alseg writes; returns True then).
        """
        if self.state_path.exists():
            if not recorded_task(self.config_path)[0].resumable:
                raise RunDirError(
                    f"{self.path} holds a finished pruning run (its results are in "
                    "results.json; pruning runs are not resumed): choose another run_dir, or "
                    "delete this one to run it again"
                )
            raise RunDirError(
                f"{self.path} already holds a run; continue it with `alseg resume {self.path}` "
                "or choose another run_dir"
            )
        restarted = self.config_path.exists()
        if restarted:
            for name in OWNED:
                p = self.path / name
                if p.is_dir():
                    shutil.rmtree(p)
                else:
                    p.unlink(missing_ok=True)
            self.remove_temp_files()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, config_yaml)
        self.files = {}
        return restarted

    def check(self) -> RunState:
        """Validate an existing run dir for resuming; returns its state."""
        if not self.path.is_dir():
            raise RunDirError(f"run dir {self.path} does not exist")
        if not self.config_path.is_file():
            raise RunDirError(f"{self.path} is not an alseg run dir: config.yaml is missing")
        if not self.state_path.is_file():
            task, stage = recorded_task(self.config_path)
            raise RunDirError(task.never_finished(self.path, stage))
        return self.read_state()

    # -- state -------------------------------------------------------------------------------
    def read_state(self) -> RunState:
        """state.json, checked (``alseg.state.check_state``); the committed-file checksums
        are loaded into ``files``."""
        path = self.state_path
        try:
            raw = json.loads(path.read_bytes().decode("utf-8"))
            state = RunState.from_dict(raw, path)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunDirError(f"{path} is corrupt ({type(e).__name__}: {e})") from None
        except ValueError as e:  # check_state's message
            raise RunDirError(str(e)) from None
        self.files = dict(state.files)
        return state

    def commit_round(
        self,
        r: int,
        rows: Sequence[dict[str, Any]],
        labels: bytes,
        state: RunState,
        also: Callable[[], None] | None = None,
    ) -> None:
        """Commit round ``r``'s answers as one transaction: its selections CSV (``rows``),
        its labels file, the files ``also`` writes (an import's painted maps and queries),
        then ``state``. The loop's rounds and the import of people's answers both commit
        here; a kill leaves all of it or none."""
        fields = ["image", "region", "score", "cost", "answer", "predicted"]
        if rows and "query" in rows[0]:  # merged regions: the root region of each row's query
            fields.insert(2, "query")
        with self.transaction():
            if also is not None:
                also()
            self.write_file(self.selections_path(r), csv_text(rows, fields).encode())
            self.write_file(self.labels_path(r), labels)
            self.write_state(state)

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.exists():
            return []
        with self.metrics_path.open(newline="") as f:
            return list(csv.DictReader(f))

    def write_metrics_row(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """Replace rows of ``row['round']`` and later, append ``row``; returns all rows."""
        rows: list[dict[str, Any]] = [
            r for r in self.read_metrics() if int(r["round"]) < int(row["round"])
        ]
        rows.append(row)
        self.write_file(self.metrics_path, csv_text(rows, list(row)).encode())
        return rows

    def write_json(self, relative: str, data: dict[str, Any]) -> None:
        """A small committed JSON record in the run dir."""
        self.write_file(self.path / relative, json.dumps(data, indent=1).encode())

    def read_json(self, relative: str) -> dict[str, Any] | None:
        """The record written by ``write_json``; None if there is none."""
        path = self.path / relative
        if not path.exists():
            return None
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path} is corrupt ({e})") from e

    # -- folders of per-image maps ----------------------------------------------------------------
    def partial_path(self, kind: str, r: int) -> Path:
        """Where round ``r``'s maps are written before ``publish_folder`` commits them."""
        return self.round_folder(kind, r).with_name(f"round_{r:02d}{PARTIAL}")

    def partial_folder(self, kind: str, r: int) -> Path:
        """``partial_path``, created. Every rank may write into it; leftovers of a killed
        pass are removed when the run resumes (``remove_temp_files``)."""
        tmp = self.partial_path(kind, r)
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def publish_folder(self, kind: str, r: int, stats: dict[str, float]) -> Path:
        """Write the manifest (checksum of every map, ``stats``) into the partial folder and
        rename it into place; the manifest becomes a committed file."""
        final, tmp = self.round_folder(kind, r), self.partial_path(kind, r)
        tmp.mkdir(parents=True, exist_ok=True)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.name != MANIFEST}
        data = json.dumps({"files": files, "stats": stats}, indent=1).encode()
        atomic_write_bytes(tmp / MANIFEST, data)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self.files[self._rel(final / MANIFEST)] = sha256_bytes(data)
        return final

    def folder_stats(self, kind: str, r: int) -> dict[str, float]:
        """The stats saved with round ``r``'s maps."""
        path = self.round_folder(kind, r) / MANIFEST
        try:
            return dict(json.loads(path.read_text())["stats"])
        except (OSError, ValueError, KeyError) as e:
            raise RunDirError(f"{path} is missing or corrupt ({e})") from e

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(
        self, r: int, state_dict: dict[str, torch.Tensor], keep: int = 2, stage: int = 1
    ) -> None:
        self.write_file(self.checkpoint_path(r, stage), _torch_bytes(state_dict))
        for old in range(r - keep, -1, -1):  # keep the last ``keep`` rounds
            self.forget(self.checkpoint_path(old, stage))

    def load_checkpoint(self, r: int, stage: int = 1) -> dict[str, torch.Tensor]:
        return self._load_torch(self.checkpoint_path(r, stage), "checkpoint")

    def save_optimizer(self, r: int, state: dict[str, Any], keep: int = 2) -> None:
        """Optimizer state of a round (continuous schedule); older rounds are pruned."""
        self.write_file(self.optimizer_path(r), _torch_bytes(state))
        for old in range(r - keep, -1, -1):
            self.forget(self.optimizer_path(old))

    def load_optimizer(self, r: int) -> dict[str, Any]:
        return dict(self._load_torch(self.optimizer_path(r), "optimizer state"))

    @staticmethod
    def _load_torch(path: Path, what: str) -> Any:
        if not path.exists():
            raise RunDirError(f"{what} {path} is missing")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for torn or foreign files
            raise RunDirError(
                f"{what} {path} is corrupt or not written by alseg (it does not load as a "
                f"weights-only torch file: {type(e).__name__})"
            ) from None
