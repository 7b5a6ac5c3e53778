"""Timing and peak-memory helpers for benchmarks.

Peak memory on the CPU is the growth of the process's peak resident set size while the
measured function runs (the kernel's VmHWM mark, reset just before), in a fresh spawned
process whose large allocations are mmap-backed (MALLOC_MMAP_THRESHOLD_=1 MiB).
Memory figures are CPU figures (the benchmarks that measure memory run on the CPU).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from collections.abc import Callable
from typing import Any

import torch


def emit(name: str, **fields: Any) -> dict[str, Any]:
    """Print one figure as a JSON line and return it."""
    row = {"bench": name, **fields}
    print(json.dumps(row), flush=True)
    return row


def timed(fn: Callable[[], Any], repeat: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeat`` calls (seconds) and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _measure(job: tuple[Callable[..., Any], tuple[Any, ...]]) -> tuple[float, float, Any]:
    fn, args = job
    torch.set_num_threads(max(1, torch.get_num_threads()))
    setup = getattr(fn, "setup", None)
    state = setup(*args) if setup else args
    _reset_peak()
    before = _status_mib("VmRSS")
    t0 = time.perf_counter()
    out = fn(*state) if setup else fn(*args)
    seconds = time.perf_counter() - t0
    return seconds, _status_mib("VmHWM") - before, out


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> tuple[float, float, Any]:
    """Run ``fn(*args)`` in a spawned process -> (seconds, peak RSS growth in MiB, result).

    If ``fn`` has a ``setup`` attribute, ``setup(*args)`` runs first (not measured) and its
    result is passed to ``fn``.
    """
    ctx = mp.get_context("spawn")
    # Large blocks straight from mmap: freed memory goes back to the OS at once, so the
    # peak measures live tensors, not glibc arenas that a longer run has fragmented.
    old = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    try:
        with ctx.Pool(1) as pool:
            return pool.apply(_measure, ((fn, args),))
    finally:
        if old is None:
            os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
        else:
            os.environ["MALLOC_MMAP_THRESHOLD_"] = old
