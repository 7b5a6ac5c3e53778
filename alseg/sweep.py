"""Local fallback for W&B sweeps: run a grid sweep's runs one after the other.

``alseg sweep conf/sweep/X.yaml --local --out DIR`` expands the sweep's ``parameters``
(``value`` / ``values``) into its grid and runs ``alseg run key=value ...`` for each
combination, without W&B, into ``DIR/<setting>-seed<N>/`` (so ``alseg report`` groups the
seeds of a setting). Finished runs are skipped and unfinished ones resumed.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from alseg.rundir import RunDir
from alseg.state import Phase


class SweepError(RuntimeError):
    """A run of a local sweep failed."""


def load_sweep(path: Path) -> dict[str, Any]:
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"sweep file {path} is unreadable ({e})") from e
    if not isinstance(spec, dict) or not isinstance(spec.get("parameters"), dict):
        raise ValueError(f"sweep file {path} has no 'parameters' mapping")
    return spec


def grid(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the sweep's parameters (grid order: last key fastest)."""
    keys, choices = [], []
    for key, p in spec["parameters"].items():
        if not isinstance(p, dict) or not ({"value", "values"} & set(p)):
            raise ValueError(
                f"parameter {key!r} is not a grid parameter (needs 'value' or 'values'); "
                "random and Bayesian sweeps need W&B agents: wandb sweep FILE"
            )
        keys.append(key)
        choices.append(p["values"] if "values" in p else [p["value"]])
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def run_name(params: dict[str, Any]) -> str:
    """``<setting>-seed<N>``: the values of the varied parameters, then the seed."""
    parts = [f"{k.split('.')[-1]}-{v}" for k, v in params.items() if k != "seed"]
    setting = "_".join(parts) or "default"
    return f"{setting}-seed{params.get('seed', 0)}"


def run_local(path: Path, out: Path, extra: list[str] | None = None) -> list[Path]:
    """Run the grid of a sweep file sequentially (subprocesses, W&B off)."""
    spec = load_sweep(path)
    combos = grid(spec)
    constant = {k for k, p in spec["parameters"].items() if "value" in p}
    out.mkdir(parents=True, exist_ok=True)
    dirs = []
    for n, params in enumerate(combos, 1):
        varied = {k: v for k, v in params.items() if k not in constant or k == "seed"}
        d = out / run_name(varied)
        dirs.append(d)
        overrides = [f"{k}={v}" for k, v in params.items() if not k.startswith("logger.")]
        state = RunDir(d).read_state() if RunDir(d).state_path.exists() else None
        if state and state.phase == Phase.DONE:
            print(f"[{n}/{len(combos)}] {d.name}: done, skipped", flush=True)
            continue
        if state:
            cmd = ["resume", str(d)]
        else:
            cmd = ["run", *overrides, *(extra or []), f"run_dir={d}", "logger=none"]
        print(f"[{n}/{len(combos)}] {d.name}: alseg {' '.join(cmd)}", flush=True)
        res = subprocess.run([sys.executable, "-m", "alseg.cli", *cmd])
        if res.returncode != 0:
            raise SweepError(
                f"run {d} failed (exit {res.returncode}); fix it and run the sweep again"
            )
    return dirs
