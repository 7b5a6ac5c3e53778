"""Run directory: the resumable state of one experiment, written atomically.

Layout (DESIGN.md §3)::

    runs/<name>/
      config.yaml            resolved config
      state.json             round, phase, clicks spent, seed, W&B id
      labels/round_XX.npz    LabelStore after the labels of round XX were committed
      selections/round_XX.csv  image, region, score, cost, answer, predicted class
      checkpoints/round_XX.pt  model weights after round XX's fit (weights only)
      metrics.csv            one row per evaluated round
      curve.png              mIoU vs clicks

Every file is written to a temp file in the same folder and renamed into place, so a
killed process leaves either the old or the new file, never a torn one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

Phase = Literal["labeled", "fitted", "evaluated", "done"]
PHASES: tuple[str, ...] = ("labeled", "fitted", "evaluated", "done")


class RunDirError(ValueError):
    """The run directory is missing, incomplete or corrupt."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def csv_text(rows: Sequence[dict[str, Any]], fieldnames: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


class RunDir:
    """Paths and atomic reads/writes of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # -- paths ---------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def curve_path(self) -> Path:
        return self.path / "curve.png"

    def labels_path(self, round: int) -> Path:
        return self.path / "labels" / f"round_{round:02d}.npz"

    def selections_path(self, round: int) -> Path:
        return self.path / "selections" / f"round_{round:02d}.csv"

    def checkpoint_path(self, round: int, stage: int = 1) -> Path:
        suffix = "" if stage == 1 else f"_stage{stage}"
        return self.path / "checkpoints" / f"round_{round:02d}{suffix}.pt"

    def pseudo_labels_path(self, round: int) -> Path:
        return self.path / "pseudo_labels" / f"round_{round:02d}.npz"

    # -- creation and validation ---------------------------------------------------------
    def create(self, config_yaml: str) -> None:
        """Start a new run; refuses a folder that already holds a run (nothing is lost)."""
        if self.state_path.exists() or self.config_path.exists():
            raise RunDirError(
                f"{self.path} already holds a run; continue it with `alseg resume {self.path}` "
                "or choose another run_dir"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, config_yaml)

    def check(self) -> dict[str, Any]:
        """Validate an existing run dir for resuming; returns its state."""
        if not self.path.is_dir():
            raise RunDirError(f"run dir {self.path} does not exist")
        if not self.config_path.is_file():
            raise RunDirError(f"{self.path} is not an alseg run dir: config.yaml is missing")
        if not self.state_path.is_file():
            raise RunDirError(
                f"{self.state_path} is missing: the run was killed before its first round was "
                "committed; start it again with `alseg run` and a new run_dir"
            )
        return self.read_state()

    # -- state -------------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunDirError(f"{self.state_path} is corrupt ({e})") from e
        for key in ("round", "phase", "seed"):
            if key not in state:
                raise RunDirError(f"{self.state_path} is corrupt: no {key!r}")
        if state["phase"] not in PHASES:
            raise RunDirError(f"{self.state_path}: phase {state['phase']!r} is not one of {PHASES}")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    # -- tables ------------------------------------------------------------------------------
    def write_selections(self, round: int, rows: Sequence[dict[str, Any]]) -> None:
        fields = ["image", "region", "score", "cost", "answer", "predicted"]
        if rows and "query" in rows[0]:  # merged regions: the root region of each row's query
            fields.insert(2, "query")
        atomic_write_text(self.selections_path(round), csv_text(rows, fields))

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
        atomic_write_text(self.metrics_path, csv_text(rows, list(row)))
        return rows

    # -- checkpoints -------------------------------------------------------------------------
    def save_checkpoint(
        self, round: int, state_dict: dict[str, torch.Tensor], keep: int = 2, stage: int = 1
    ) -> None:
        buf = io.BytesIO()
        torch.save(state_dict, buf)
        atomic_write_bytes(self.checkpoint_path(round, stage), buf.getvalue())
        for old in range(round - keep, -1, -1):  # keep the last ``keep`` rounds
            self.checkpoint_path(old, stage).unlink(missing_ok=True)

    def optimizer_path(self, round: int) -> Path:
        return self.path / "checkpoints" / f"round_{round:02d}_optimizer.pt"

    def save_optimizer(self, round: int, state: dict[str, Any], keep: int = 2) -> None:
        """Optimizer state of a round (continuous schedule); older rounds are pruned."""
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.optimizer_path(round), buf.getvalue())
        for old in range(round - keep, -1, -1):
            self.optimizer_path(old).unlink(missing_ok=True)

    def load_optimizer(self, round: int) -> dict[str, Any]:
        path = self.optimizer_path(round)
        if not path.exists():
            raise RunDirError(f"optimizer state {path} is missing")
        try:
            return dict(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as e:
            raise RunDirError(f"optimizer state {path} is corrupt ({e})") from e

    def save_pseudo_labels(
        self, round: int, labels: dict[int, torch.Tensor], stats: dict[str, float]
    ) -> None:
        """Stage-2 pseudo labels (uint8 maps of the labeled images) and their accuracy."""
        buf = io.BytesIO()
        index = np.array(sorted(labels), dtype=np.int64)
        arrays: dict[str, np.ndarray] = {
            f"image_{i}": labels[i].numpy().astype(np.uint8) for i in index
        }
        arrays.update(index=index, stats=np.array(json.dumps(stats)))
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(self.pseudo_labels_path(round), buf.getvalue())

    def write_json(self, relative: str, data: dict[str, Any]) -> None:
        """A small JSON record in the run dir (atomic)."""
        atomic_write_text(self.path / relative, json.dumps(data, indent=1))

    def read_json(self, relative: str) -> dict[str, Any] | None:
        """The record written by ``write_json``; None if there is none."""
        path = self.path / relative
        if not path.exists():
            return None
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError) as e:
            raise RunDirError(f"{path} is corrupt ({e})") from e

    def merged_path(self, round: int) -> Path:
        return self.path / "merged" / f"round_{round:02d}.npz"

    def sieve_path(self, round: int) -> Path:
        return self.path / "sieve" / f"round_{round:02d}.npz"

    def save_merged(self, round: int, root: np.ndarray, offsets: np.ndarray) -> None:
        """Adaptive superpixels of a round: the local id of each base region's root
        (uint16, concatenated over images in global-id order)."""
        images = np.searchsorted(offsets, np.arange(len(root)), side="right") - 1
        local = (root - offsets[images]).astype(np.uint16)
        buf = io.BytesIO()
        np.savez_compressed(buf, root=local, offsets=offsets)
        atomic_write_bytes(self.merged_path(round), buf.getvalue())

    def save_sieve(
        self, round: int, drops: dict[int, torch.Tensor], stats: dict[str, float]
    ) -> None:
        """Pixels sieved out of the labels of a round (bit-packed per image) and stats."""
        index = np.array(sorted(drops), dtype=np.int64)
        arrays: dict[str, np.ndarray] = {"index": index, "stats": np.array(json.dumps(stats))}
        for i in index:
            d = drops[int(i)].numpy()
            arrays[f"image_{i}"] = np.packbits(d.ravel())
            arrays[f"shape_{i}"] = np.array(d.shape, dtype=np.int64)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)  # type: ignore[arg-type]
        atomic_write_bytes(self.sieve_path(round), buf.getvalue())

    def load_sieve(self, round: int) -> tuple[dict[int, torch.Tensor], dict[str, float]]:
        path = self.sieve_path(round)
        try:
            with np.load(path, allow_pickle=False) as z:
                drops = {}
                for i in z["index"].tolist():
                    shape = tuple(z[f"shape_{i}"].tolist())
                    bits = np.unpackbits(z[f"image_{i}"])[: shape[0] * shape[1]]
                    drops[i] = torch.from_numpy(bits.reshape(shape).astype(bool))
                return drops, dict(json.loads(str(z["stats"])))
        except (OSError, ValueError, KeyError) as e:
            raise RunDirError(f"sieve file {path} is missing or corrupt ({e})") from e

    def read_pseudo_stats(self, round: int) -> dict[str, float]:
        path = self.pseudo_labels_path(round)
        try:
            with np.load(path, allow_pickle=False) as z:
                return dict(json.loads(str(z["stats"])))
        except (OSError, ValueError, KeyError) as e:
            raise RunDirError(f"pseudo labels {path} are missing or corrupt ({e})") from e

    def load_checkpoint(self, round: int, stage: int = 1) -> dict[str, torch.Tensor]:
        path = self.checkpoint_path(round, stage)
        if not path.exists():
            raise RunDirError(f"checkpoint {path} is missing")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises several types for torn or foreign files
            raise RunDirError(f"checkpoint {path} is corrupt ({e})") from e
