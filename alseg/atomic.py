"""Atomic file writes: a temp file in the same folder, flushed, then renamed into place.

A killed process leaves either the old file or the new one under the final name, never a
torn one. What it can leave is the temp file itself (``.<name>.<random>.tmp``), which
``alseg resume`` removes (``is_temp_file``).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import os
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"


class LockError(ValueError):
    """A folder is locked by another process (the message names it)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(file)`` on a temp file next to ``path``, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def buffered(write: Callable[[IO[bytes]], object]) -> bytes:
    """The bytes ``write(file)`` produces (to checksum and write them in one go)."""
    buf = io.BytesIO()
    write(buf)
    return buf.getvalue()


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is the temp file of an interrupted ``atomic_write``."""
    return path.name.startswith(".") and path.name.endswith(TEMP_SUFFIX)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def csv_text(rows: Sequence[dict[str, Any]], fieldnames: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def hold_lock(lock_path: Path, command: str, what: Path) -> IO[str]:
    """Take the exclusive lock of ``lock_path`` (creating its folder) and write who holds it;
    the open file holds the lock until it is closed. Raises ``LockError`` naming the
    process that holds it. The operating system releases the lock when the holder exits,
    however it exits, so a lock is never stale."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    f = open(lock_path, "a+")  # noqa: SIM115 (held until the caller closes it)
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise LockError(
            f"{what} is in use by {holder}; wait for it to finish (or stop it) — "
            "one process at a time may write a run dir"
        ) from None
    f.seek(0)
    f.truncate()
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    f.write(f"pid {os.getpid()} on {socket.gethostname()} (alseg {command}, since {started})\n")
    f.flush()
    return f
