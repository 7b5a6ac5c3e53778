"""Tables over debiasing run dirs (``alseg summarize`` / ``alseg report`` of task=debias
runs): one row per run from its results.json, mean ± std per setting."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from alseg.report import finished_results, mean_std, save_tables
from alseg.rundir import RunDir

COLUMNS = ("unbiased", "aligned", "conflicting", "worst")


def is_debias_run(run_dir: Path | str) -> bool:
    path = RunDir(run_dir).config_path
    if not path.is_file():
        return False
    cfg = OmegaConf.load(path)
    return isinstance(cfg, DictConfig) and cfg.get("task", "active") == "debias"


def _setting(run_dir: Path, method: str, data: str) -> str:
    """The folder name without a trailing ``-seed<N>`` (the scripts' naming), else
    ``method / data``."""
    m = re.fullmatch(r"(.+)-seed\d+", run_dir.name)
    return m.group(1) if m else f"{method} / {data}"


def load_results(run_dirs: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run: setting, method, data, conflict ratio, seed, the selected
    epoch and the val_/test_ summaries; notes on unfinished runs."""
    rows: list[dict] = []
    notes: list[str] = []
    for d, res, cfg in finished_results(run_dirs, notes):
        row = {
            "run": d.name,
            "setting": _setting(d, res["method"], str(cfg.data.name)),
            "method": res["method"],
            "data": str(cfg.data.name),
            "conflict_ratio": cfg.data.get("conflict_ratio"),
            "seed": int(cfg.seed),
            "criterion": res["criterion"],
            "epoch": res["selected"]["epoch"],
        }
        for split in ("val", "test"):
            row.update({f"{split}_{k}": v for k, v in res[split].items()})
        rows.append(row)
    return pd.DataFrame(rows), notes


def results_table(df: pd.DataFrame, split: str = "test") -> str:
    """Markdown: one row per setting, mean ± std (population) of the ``split`` accuracies."""
    if df.empty:
        raise ValueError("no finished debiasing run among the given folders")
    head = " | ".join(f"{split} {c}" for c in COLUMNS)
    lines = [f"| setting | runs | {head} |", "|" + "---|" * (len(COLUMNS) + 2)]
    for setting, g in sorted(df.groupby("setting"), key=lambda t: t[0]):
        cells = [mean_std(g[f"{split}_{c}"]) for c in COLUMNS]
        lines.append(f"| {setting} | {len(g)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results_report(run_dirs: Sequence[Path | str], out: Path) -> list[str]:
    """runs.csv, runs.parquet and table.md of debiasing runs into ``out``."""
    df, notes = load_results(run_dirs)
    save_tables(df, results_table(df), out)
    return notes
