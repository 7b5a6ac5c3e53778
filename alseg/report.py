"""Reports over run dirs: a tidy table (one row per run x round), learning curves with
mean ± std bands per setting, a per-class IoU heat map and a markdown table.

    alseg report runs/baselines/*/ --out reports/baselines
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from alseg.acquisition.strategies import strategy_names
from alseg.plots import _pyplot
from alseg.rundir import RunDir, RunDirError
from alseg.state import Phase


def setting_of(run_dir: Path) -> str:
    """The setting a run belongs to: its folder name without a trailing ``-seed<N>``
    (the scripts name runs ``<setting>-seed<N>``), else ``strategy / labeling``."""
    name = Path(run_dir).name
    m = re.fullmatch(r"(.+)-seed\d+", name)
    if m:
        return m.group(1)
    cfg = OmegaConf.load(RunDir(run_dir).config_path)
    return f"{'+'.join(strategy_names(cfg.active.strategy))} / {cfg.labeling.type}"


def load_runs(run_dirs: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """Tidy table of every complete round of every run, and notes on skipped input.

    A folder without config.yaml is not a run dir (skipped, with a note); a run killed
    mid-round contributes its complete rounds (metrics.csv holds only those), with a note;
    a run dir whose files do not parse is named with the file and the reason, and skipped.
    """
    frames, notes = [], []
    for d in map(Path, run_dirs):
        rd = RunDir(d)
        if not rd.config_path.is_file():
            notes.append(f"{d}: not an alseg run dir (no config.yaml); skipped")
            continue
        try:
            df = _run_rows(rd, notes)
        except _UnreadableError as e:
            notes.append(f"{e}; skipped")
            continue
        if df is not None:
            frames.append(df)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, notes


class _UnreadableError(ValueError):
    """A run dir's file that does not parse: the message names the file and the reason."""


def _run_rows(rd: RunDir, notes: list[str]) -> pd.DataFrame | None:
    """The rounds of one run dir (None when it has none), with its setting, strategy,
    labeling and seed."""
    d = rd.path
    try:
        rows = rd.read_metrics()
        df = pd.DataFrame(rows)
        for col in df.columns:  # metrics.csv holds numbers only ("nan" where undefined)
            df[col] = pd.to_numeric(df[col].replace({"nan": float("nan"), "": float("nan")}))
        if rows and df[["round", "clicks"]].isna().any().any():
            raise ValueError("a row without its round or clicks")
    except (ValueError, KeyError, csv.Error, OSError) as e:
        raise _UnreadableError(f"{rd.metrics_path}: unreadable ({type(e).__name__}: {e})") from e
    try:
        state = rd.read_state() if rd.state_path.is_file() else None
    except RunDirError as e:
        raise _UnreadableError(str(e)) from e
    if not rows:
        notes.append(f"{d}: no complete round yet; skipped")
        return None
    if state is None or state.phase != Phase.DONE:
        where = f"round {state.round}, phase {state.phase}" if state else "no state.json"
        notes.append(
            f"{d}: unfinished (stopped in {where}); reporting its {len(rows)} complete round(s)"
        )
    try:
        cfg = OmegaConf.load(rd.config_path)
        setting = setting_of(d)
        strategy = "+".join(strategy_names(cfg.active.strategy))
        labeling, seed = str(cfg.labeling.type), int(cfg.seed)
    except Exception as e:  # OmegaConf raises several types for a damaged file
        raise _UnreadableError(f"{rd.config_path}: unreadable ({type(e).__name__}: {e})") from e
    df.insert(0, "run", d.name)
    df.insert(1, "setting", setting)
    df.insert(2, "strategy", strategy)
    df.insert(3, "labeling", labeling)
    df.insert(4, "seed", seed)
    return df


def markdown_table(df: pd.DataFrame, metric: str = "mIoU") -> str:
    """One row per setting: mean ± std (population) over runs of ``metric`` at each round
    that every run completed (the value alone for a single run); the header gives each
    round's clicks (first run)."""
    if df.empty:
        raise ValueError("no run dir with complete rounds among the given folders")
    if metric not in df:
        raise ValueError(
            f"metric {metric!r} is not a metrics.csv column; valid: {list(df.columns)}"
        )
    rounds = int(df.groupby("run")["round"].max().min()) + 1
    first = df[df.run == df.run.iloc[0]].set_index("round")["clicks"]
    head = " | ".join(f"round {r} ({float(first[r]):g} clicks)" for r in range(rounds))
    lines = [f"| setting | runs | {head} |", "|" + "---|" * (rounds + 2)]
    for setting, g in sorted(df[df["round"] < rounds].groupby("setting"), key=lambda t: t[0]):
        piv = g.pivot(index="run", columns="round", values=metric)
        if len(piv) > 1:
            cells = [f"{piv[r].mean():.1f} ± {piv[r].std(ddof=0):.1f}" for r in range(rounds)]
        else:  # one run: no spread to show
            cells = [f"{piv[r].iloc[0]:.1f}" for r in range(rounds)]
        lines.append(f"| {setting} | {len(piv)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mean_std(v: pd.Series, digits: int = 1) -> str:
    """A table cell: mean ± std (population) over runs, the value of a single run, or —."""
    if not len(v):
        return "—"
    if len(v) > 1:
        return f"{v.mean():.{digits}f} ± {v.std(ddof=0):.{digits}f}"
    return f"{v.iloc[0]:.{digits}f}"


def finished_results(
    run_dirs: Sequence[Path | str], notes: list[str]
) -> Iterator[tuple[Path, dict[str, Any], DictConfig]]:
    """(run dir, its results.json, its config) of each finished run of a one-shot task
    (debias, prune); an unfinished one is named in ``notes``."""
    for d in map(Path, run_dirs):
        path = d / "results.json"
        if not path.is_file():
            notes.append(f"{d}: no results.json (unfinished); skipped")
            continue
        try:
            results = json.loads(path.read_text())
            cfg = OmegaConf.load(RunDir(d).config_path)
        except Exception as e:  # JSON and OmegaConf raise several types for damaged files
            notes.append(
                f"{d}: results.json or config.yaml unreadable ({type(e).__name__}: {e}); skipped"
            )
            continue
        assert isinstance(cfg, DictConfig)
        yield d, results, cfg


def save_tables(df: pd.DataFrame, table: str, out: Path) -> None:
    """runs.csv, runs.parquet (one row per run or run x round) and table.md into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "runs.csv", index=False)
    df.to_parquet(out / "runs.parquet", index=False)
    (out / "table.md").write_text(table + "\n")


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write (making the folder) and close a figure."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_curves(
    df: pd.DataFrame,
    path: Path,
    metric: str = "mIoU",
    full: tuple[float, float, int] | None = None,
    paired: pd.DataFrame | None = None,
    baseline: str | None = None,
) -> None:
    """``metric`` vs clicks: the mean over the runs of each setting with its bootstrap 95 %
    interval over runs as a band; the full-supervision reference (mean, std, runs) as a
    line; with ``paired`` (``alseg.study.paired_table``), a second panel of the paired
    differences to ``baseline`` with their intervals."""
    from alseg.study import bootstrap_ci

    plt = _pyplot()
    panels = 2 if paired is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 4), squeeze=False)
    ax = axes[0][0]
    for setting, g in sorted(df.groupby("setting"), key=lambda t: t[0]):
        rounds = g.groupby("round")
        x, m = rounds["clicks"].mean(), rounds[metric].mean()
        ci = np.array([bootstrap_ci(v.to_numpy()) for _, v in rounds[metric]])
        ax.plot(x, m, marker="o", label=f"{setting} (n={g.run.nunique()})")
        ax.fill_between(x, ci[:, 0], ci[:, 1], alpha=0.2)
    if full is not None:
        ax.axhline(full[0], color="k", ls="--", lw=1, label=f"full supervision (n={full[2]})")
    ax.set_xlabel("clicks")
    ax.set_ylabel(f"test {metric} (%)")
    ax.set_title("mean over seeds, bootstrap 95 % interval", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if paired is not None:
        ax = axes[0][1]
        per_round = paired[paired["round"] != "AUC"]
        for setting, g in sorted(per_round.groupby("setting"), key=lambda t: t[0]):
            x = g["clicks"].astype(float)
            ax.plot(x, g["mean"], marker="o", label=setting)
            ax.fill_between(x, g["lo"].astype(float), g["hi"].astype(float), alpha=0.2)
        ax.axhline(0, color="k", lw=1)
        ax.set_xlabel("clicks")
        ax.set_ylabel(f"Δ test {metric} vs {baseline} (points)")
        ax.set_title("paired by seed: mean difference, bootstrap 95 % interval", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_class_heatmap(df: pd.DataFrame, path: Path) -> None:
    """Mean per-class IoU of each setting at its last common round."""
    plt = _pyplot()
    cols = [c for c in df.columns if c.startswith("IoU_")]
    last = df.groupby("setting")["round"].transform(lambda r: r.max())
    final = df[df["round"] == last].groupby("setting")[cols].mean()
    fig, ax = plt.subplots(figsize=(1 + 0.7 * len(cols), 0.8 + 0.45 * len(final)))
    im = ax.imshow(final.to_numpy(dtype=float), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(cols)), [c[4:] for c in cols], rotation=45, ha="right")
    ax.set_yticks(range(len(final)), list(final.index))
    for (i, j), v in np.ndenumerate(final.to_numpy(dtype=float)):
        ax.text(
            j, i, f"{v:.0f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=8
        )
    fig.colorbar(im, ax=ax, label="IoU (%)")
    ax.set_title("per-class IoU at the last round")
    save_figure(fig, path)


def write_report(
    run_dirs: Sequence[Path | str],
    out: Path,
    metric: str = "mIoU",
    baseline: str | None = None,
    full_dirs: Sequence[Path | str] = (),
) -> list[str]:
    """Write runs.csv, runs.parquet, curves.png, classes.png and table.md into ``out``; with
    ``baseline`` (a setting) the paired study tables too: summary.md (per setting: last
    round, AUC, share of full supervision, paired differences), paired.md and paired.csv
    (every round); ``full_dirs``: full-supervision reference runs (full.csv). Returns the
    notes on skipped or unfinished runs."""
    from alseg.study import full_reference, paired_markdown, paired_table, summary_table

    df, notes = load_runs(run_dirs)
    if df.empty:
        raise ValueError("no run dir with complete rounds among: " + ", ".join(map(str, run_dirs)))
    full = None
    if full_dirs:
        full_df, more = load_runs(full_dirs)
        notes += more
        if full_df.empty:
            raise ValueError(
                "no complete full-supervision run among: " + ", ".join(map(str, full_dirs))
            )
        full = full_reference(full_df, metric)
        out.mkdir(parents=True, exist_ok=True)
        full_df.to_csv(out / "full.csv", index=False)
    paired = paired_table(df, baseline, metric) if baseline is not None else None
    table = markdown_table(df, metric)
    if full is not None:
        table += f"\n\nfull supervision: {full[0]:.1f} ± {full[1]:.1f} {metric} ({full[2]} runs)"
    save_tables(df, table, out)
    if paired is not None or full is not None:
        summary = summary_table(df, paired, baseline, full[0] if full else None, metric)
        (out / "summary.md").write_text(summary + "\n")
    if paired is not None:
        assert baseline is not None
        paired.to_csv(out / "paired.csv", index=False)
        (out / "paired.md").write_text(paired_markdown(paired, baseline, metric) + "\n")
    plot_curves(df, out / "curves.png", metric, full, paired, baseline)
    plot_class_heatmap(df, out / "classes.png")
    return notes
