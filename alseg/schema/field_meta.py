"""Field constructors of the config schema: each field's metadata holds its range
(``ge``, ``gt``) or choices, which ``alseg.schema.check`` tests."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from omegaconf import MISSING

SEED_MAX = 4_000_000  # seed * 1000 + round stays within the 32 bits of Lightning's seeding


def ge(v: float) -> dict[str, Any]:
    return {"ge": v}


def gt(v: float) -> dict[str, Any]:
    return {"gt": v}


def choices(*values: str) -> dict[str, Any]:
    return {"choices": values}


def opt(default: Any = None, **meta: Any) -> Any:
    return field(default=default, metadata=meta)


def req(**meta: Any) -> Any:
    return field(default=MISSING, metadata=meta)
