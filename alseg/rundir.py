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

Every file is written to a temp file in the same folder and renamed into place, so a
killed process leaves either the old or the new file, never a torn one. Files that a
resumed run reads are *committed*: their checksum goes into state.json with the phase that
needs them, and ``verify`` checks them all before a run resumes. Where several files and
state.json must change together (a round's labels and selections, an import of answers),
``transaction`` stages them and applies them all or none: a process killed before its
journal is written leaves the run dir as it was, one killed after it is finished by the
next writer (``recover``, when it takes the lock). One process at a time writes a run dir
(``lock``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import IO, Any

import torch

from alseg.atomic import (
    LockError,
    atomic_write_bytes,
    atomic_write_text,
    buffered,
    csv_text,
    hold_lock,
    is_temp_file,
    sha256_bytes,
    sha256_file,
)


class Phase(str, Enum):
    """The last phase a run committed to state.json (stored as its value): round r's labels
    bought, its model fitted, evaluated (and the next selection may start), the run done,
    or round r's queries waiting for people's answers (labeling.oracle=human). Pruning,
    debiasing and pre-training runs use ``fitted`` (an epoch checkpoint) and ``done``."""

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
PARTIAL = ".partial"  # suffix of a folder being written
MANIFEST = "manifest.json"
STAGING = ".commit"  # a transaction's staged files, journal and state.json
JOURNAL = "journal.json"  # written last into STAGING: the transaction is committed
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


class RunDirError(ValueError):
    """The run directory is missing, incomplete, corrupt or in use."""


def _torch_bytes(obj: Any) -> bytes:
    return buffered(lambda f: torch.save(obj, f))


class RunDir:
    """Paths and atomic, checksummed reads and writes of one run directory.

    ``files`` maps the committed files (paths relative to the run dir) to their SHA-256; it
    is saved in state.json by ``write_state`` and checked by ``verify``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files: dict[str, str] = {}
        self.state: dict[str, Any] = {}  # what the loop continues from (see alseg.build)
        self._lock: IO[str] | None = None
        self._staged: list[str] | None = None  # relative paths staged by a transaction

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

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

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

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.path).as_posix()

    # -- one writer at a time ----------------------------------------------------------------
    def acquire_lock(self, command: str) -> None:
        """Take the exclusive lock of this run dir (creating the folder), or raise
        RunDirError naming the process that holds it. The operating system releases the
        lock when the holder exits, however it exits, so a lock is never stale."""
        if self._lock is not None:
            return
        try:
            self._lock = hold_lock(self.lock_path, command, self.path)
        except LockError as e:
            raise RunDirError(str(e)) from None
        self.recover()

    def release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    @contextmanager
    def locked(self, command: str) -> Iterator[RunDir]:
        self.acquire_lock(command)
        try:
            yield self
        finally:
            self.release_lock()

    # -- creation and validation ---------------------------------------------------------
    def create(self, config_yaml: str) -> bool:
        """Start a new run (call with the lock held). Refuses a folder that holds a run; a
        run that stopped before committing round 0 is removed and started afresh (only the
        files alseg writes; returns True then).
        """
        if self.state_path.exists():
            if self.task()[0] == "prune":
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

    def check(self) -> dict[str, Any]:
        """Validate an existing run dir for resuming; returns its state."""
        if not self.path.is_dir():
            raise RunDirError(f"run dir {self.path} does not exist")
        if not self.config_path.is_file():
            raise RunDirError(f"{self.path} is not an alseg run dir: config.yaml is missing")
        if not self.state_path.is_file():
            task, stage = self.task()
            if task == "active":
                raise RunDirError(
                    f"{self.path} never committed its first round (the run stopped before "
                    f"round 0's labels were saved): start it again with `alseg run ... "
                    f"run_dir={self.path}` (the folder is reused)"
                )
            command = f"alseg prune {stage}" if task == "prune" else "alseg run"
            raise RunDirError(
                f"{self.path} never finished (a {task} run writes its state when it ends, and "
                f"is not resumed): start it again with `{command} ... run_dir={self.path}` "
                "(the folder is reused)"
            )
        return self.read_state()

    def task(self) -> tuple[str, str]:
        """The task of the run (``active``, ``prune``, ``debias``) and its pruning stage,
        from config.yaml (``active`` if it does not say)."""
        import yaml

        try:
            cfg = yaml.safe_load(self.config_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            return "active", ""
        prune = cfg.get("prune") or {}
        return str(cfg.get("task", "active")), str(prune.get("stage", "score"))

    # -- state -------------------------------------------------------------------------------
    def read_state(self) -> dict[str, Any]:
        """state.json, checked: a mapping with an integer round >= 0, a known phase and a
        seed; the committed-file checksums are loaded into ``files``."""
        path = self.state_path
        try:
            state = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise RunDirError(f"{path} is corrupt ({type(e).__name__}: {e})") from None
        if not isinstance(state, dict):
            raise RunDirError(f"{path} is corrupt: not a JSON object")
        for key in ("round", "phase", "seed"):
            if key not in state:
                raise RunDirError(f"{path} is corrupt: no {key!r}")
        r = state["round"]
        if not isinstance(r, int) or isinstance(r, bool) or r < 0:
            raise RunDirError(f"{path} is corrupt: round {r!r} is not an integer >= 0")
        if state["phase"] not in PHASES:
            raise RunDirError(f"{path}: phase {state['phase']!r} is not one of {PHASES}")
        files = state.get("files", {})
        if not isinstance(files, dict):
            raise RunDirError(f"{path} is corrupt: 'files' is not a mapping")
        self.files = {str(k): str(v) for k, v in files.items()}
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        """Commit: state.json with the checksums of every committed file (staged inside a
        ``transaction``)."""
        state = {**state, "files": dict(sorted(self.files.items()))}
        text = json.dumps(state, indent=2, sort_keys=True) + "\n"
        if self._staged is not None:
            atomic_write_text(self.path / STAGING / self.state_path.name, text)
            return
        atomic_write_text(self.state_path, text)

    # -- several files as one commit ---------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[RunDir]:
        """Stage the committed files and the state.json written inside the block, then
        apply them together: the journal (the list of staged files) is written last into
        the staging folder, which commits them; each is then renamed into place, state.json
        last. An exception inside the block discards what was staged; an interrupt (Ctrl-C)
        leaves it for ``recover``, as a kill does."""
        if self._staged is not None:
            raise RuntimeError("transactions do not nest")
        staging = self.path / STAGING
        shutil.rmtree(staging, ignore_errors=True)
        before = dict(self.files)
        self._staged = []
        try:
            yield self
            staged = self._staged
        except BaseException as e:
            self.files = before
            if isinstance(e, Exception):
                shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            self._staged = None
        atomic_write_text(staging / JOURNAL, json.dumps(staged))
        self._apply(staging)

    def _apply(self, staging: Path) -> None:
        """Move a committed transaction's files into place (those not moved yet), then its
        state.json, and remove the staging folder."""
        for rel in json.loads((staging / JOURNAL).read_text()):
            src = staging / rel
            if src.is_file():
                (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, self.path / rel)
        if (staging / self.state_path.name).is_file():
            os.replace(staging / self.state_path.name, self.state_path)
        shutil.rmtree(staging)

    def recover(self) -> str | None:
        """Finish or drop a transaction that a killed process left (call with the lock
        held): with its journal it is applied, without it discarded. Returns what was
        done, or None."""
        staging = self.path / STAGING
        if not staging.is_dir():
            return None
        if (staging / JOURNAL).is_file():
            self._apply(staging)
            return "finished"
        shutil.rmtree(staging)
        return "dropped"

    def verify(self) -> None:
        """Check every committed file against its checksum (and the files listed in
        committed manifests); raise RunDirError naming the first one that is missing or
        changed."""
        for rel, digest in sorted(self.files.items()):
            path = self.path / rel
            if not path.is_file():
                raise RunDirError(f"{path} is missing: the run dir lost a committed file")
            if sha256_file(path) != digest:
                raise RunDirError(
                    f"{path} is corrupt: it does not match the checksum recorded in "
                    f"{self.state_path} (changed or damaged after it was committed)"
                )
            if path.name == MANIFEST:
                self._verify_manifest(path)

    def _verify_manifest(self, manifest: Path) -> None:
        listed = json.loads(manifest.read_text())["files"]
        for name, digest in listed.items():
            path = manifest.parent / name
            if not path.is_file() or sha256_file(path) != digest:
                raise RunDirError(
                    f"{path} is missing or corrupt (its checksum in {manifest} differs)"
                )

    def remove_temp_files(self) -> list[Path]:
        """Remove what interrupted writes left: temp files and partial folders."""
        removed: list[Path] = []
        if not self.path.is_dir():
            return removed
        for p in sorted(self.path.rglob("*"), reverse=True):
            if "wandb" in p.relative_to(self.path).parts:
                continue  # W&B's own files
            if p.is_dir() and p.name.endswith(PARTIAL):
                shutil.rmtree(p)
                removed.append(p)
            elif p.is_file() and is_temp_file(p):
                p.unlink()
                removed.append(p)
        return removed

    # -- committed files ----------------------------------------------------------------------
    def write_file(self, path: Path, data: bytes) -> None:
        """Write a committed file atomically and record its checksum (staged inside a
        ``transaction``)."""
        rel = self._rel(path)
        if self._staged is not None:
            atomic_write_bytes(self.path / STAGING / rel, data)
            self._staged.append(rel)
        else:
            atomic_write_bytes(path, data)
        self.files[rel] = sha256_bytes(data)

    def forget(self, path: Path) -> None:
        """Delete a committed file that is no longer needed (pruned checkpoints)."""
        path.unlink(missing_ok=True)
        self.files.pop(self._rel(path), None)

    def commit_round(
        self,
        r: int,
        rows: Sequence[dict[str, Any]],
        labels: bytes,
        state: dict[str, Any],
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
