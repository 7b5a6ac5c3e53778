"""Atomic file writes: a temp file in the same folder, flushed, then renamed into place.

A killed process leaves either the old file or the new one under the final name, never a
torn one. What it can leave is the temp file itself (``.<name>.<random>.tmp``), which
``alseg resume`` removes (``is_temp_file``).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

TEMP_SUFFIX = ".tmp"


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
