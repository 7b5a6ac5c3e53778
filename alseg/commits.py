"""Committed folders: atomic, checksummed writes of the files a process must find intact
when it resumes, one writer at a time, several files as one commit.

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

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from alseg.atomic import (
    LockError,
    atomic_write_bytes,
    atomic_write_text,
    hold_lock,
    is_temp_file,
    sha256_bytes,
    sha256_file,
)
from alseg.state import RunState

PARTIAL = ".partial"  # suffix of a folder being written
MANIFEST = "manifest.json"
STAGING = ".commit"  # a transaction's staged files, journal and state.json
JOURNAL = "journal.json"  # written last into STAGING: the transaction is committed


class RunDirError(ValueError):
    """The run directory is missing, incomplete, corrupt or in use."""


class CommittedFolder:
    """A folder whose committed files are written atomically, recorded with their SHA-256
    in its state.json and checked before a process continues from them.

    ``files`` maps the committed files (paths relative to the folder) to their SHA-256; it
    is saved in state.json by ``write_state`` and checked by ``verify``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.files: dict[str, str] = {}
        self._lock: IO[str] | None = None
        self._staged: list[str] | None = None  # relative paths staged by a transaction

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

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
    def locked(self, command: str) -> Iterator[CommittedFolder]:
        self.acquire_lock(command)
        try:
            yield self
        finally:
            self.release_lock()

    def write_state(self, state: RunState) -> None:
        """Commit: state.json with the checksums of every committed file (staged inside a
        ``transaction``)."""
        data = {**state.to_dict(), "files": dict(sorted(self.files.items()))}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        if self._staged is not None:
            atomic_write_text(self.path / STAGING / self.state_path.name, text)
            return
        atomic_write_text(self.state_path, text)

    # -- several files as one commit ---------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[CommittedFolder]:
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
