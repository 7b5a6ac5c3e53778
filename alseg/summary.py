"""Learning-curve tables over run dirs: mean ± std per setting (strategy x label type)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from alseg.rundir import RunDir


def setting_of(run_dir: Path) -> str:
    """The setting a run belongs to: its folder name without a trailing ``-seed<N>``
    (scripts/baselines.sh names runs ``<setting>-seed<N>``), else ``strategy / labeling``
    from its config.yaml."""
    name = Path(run_dir).name
    m = re.fullmatch(r"(.+)-seed\d+", name)
    if m:
        return m.group(1)
    cfg = OmegaConf.load(RunDir(run_dir).config_path)
    return f"{cfg.active.strategy} / {cfg.labeling.type}"


def collect(run_dirs: Sequence[Path]) -> dict[str, list[list[dict[str, str]]]]:
    """setting -> list of runs, each a list of metrics rows. Skips folders without metrics."""
    out: dict[str, list[list[dict[str, str]]]] = defaultdict(list)
    for d in run_dirs:
        rd = RunDir(d)
        if not rd.config_path.exists():
            raise ValueError(f"{d} is not an alseg run dir (no config.yaml)")
        rows = rd.read_metrics()
        if rows:
            out[setting_of(d)].append(rows)
    return out


def markdown_table(run_dirs: Sequence[Path], metric: str = "mIoU") -> str:
    """One row per setting: mean ± std over runs of ``metric`` at each round (rounds that
    every run of the setting completed), with the clicks of each round in the header."""
    groups = collect(run_dirs)
    if not groups:
        raise ValueError("no run dir with metrics.csv among the given folders")
    rounds = min(len(rows) for runs in groups.values() for rows in runs)
    clicks = [next(iter(groups.values()))[0][r]["clicks"] for r in range(rounds)]
    head = (
        "| setting | runs | "
        + " | ".join(f"round {r} ({float(c):g} clicks)" for r, c in enumerate(clicks))
        + " |"
    )
    lines = [head, "|" + "---|" * (rounds + 2)]
    for setting, runs in sorted(groups.items()):
        vals = np.array([[float(rows[r][metric]) for r in range(rounds)] for rows in runs])
        cells = [f"{m:.1f} ± {s:.1f}" for m, s in zip(vals.mean(0), vals.std(0))]
        lines.append(f"| {setting} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
