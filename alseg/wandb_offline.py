"""Read an offline W&B run (``wandb/offline-run-*/run-*.wandb``) without syncing it.

The file is a log of protobuf records in 32 KiB blocks (the LevelDB log format behind a
7-byte W&B header); each record is a ``wandb.proto.wandb_internal_pb2.Record``. Used by
tests and notebooks to check what a run logged while offline.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7  # b":W&B" + 2 bytes magic + 1 byte version
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def _chunks(data: bytes) -> Iterator[bytes]:
    """The records of a log, joined from their pieces. The log ends at its first torn or
    damaged piece (cut mid-header or mid-data, a checksum that fails, a piece out of
    order): a file W&B is still writing, or one left by a kill, ends inside a record, and
    the complete records before it are what it holds (LevelDB's reader does the same)."""
    if not data.startswith(b":W&B"):
        raise ValueError("not a W&B run file (no :W&B header)")
    pos, buf = _HEADER, None
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        if len(chunk) < length or zlib.crc32(chunk, zlib.crc32(bytes([kind]))) != crc:
            return
        pos += 7 + length
        if kind == _FULL and buf is None:
            yield chunk
        elif kind == _FIRST and buf is None:
            buf = chunk
        elif kind in (_MIDDLE, _LAST) and buf is not None:
            buf += chunk
            if kind == _LAST:
                yield buf
                buf = None
        else:
            return


def read_records(path: str | Path) -> list[Any]:
    """All records of a ``.wandb`` file, as protobuf ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2 as pb

    out = []
    for chunk in _chunks(Path(path).read_bytes()):
        rec = pb.Record()  # type: ignore[attr-defined]
        rec.ParseFromString(chunk)
        out.append(rec)
    return out


def history(path: str | Path) -> list[dict[str, Any]]:
    """The logged rows (``wandb.log`` calls) of an offline run, values JSON-decoded."""
    rows = []
    for rec in read_records(path):
        if rec.WhichOneof("record_type") == "history":
            row = {}
            for item in rec.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


def artifacts(path: str | Path) -> list[dict[str, Any]]:
    """Name, type, aliases and metadata of the artifacts an offline run logged."""
    out = []
    for rec in read_records(path):
        if rec.WhichOneof("record_type") == "artifact":
            a = rec.artifact
            out.append(
                {
                    "name": a.name,
                    "type": a.type,
                    "aliases": list(a.aliases),
                    "metadata": json.loads(a.metadata) if a.metadata else {},
                    "files": [e.path for e in a.manifest.contents],
                }
            )
    return out
