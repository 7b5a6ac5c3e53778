"""Tables and plots over pruning run dirs (``alseg summarize`` / ``alseg report`` of
``task=prune`` retrain runs): test accuracy or mIoU against the kept fraction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from alseg.plots import _pyplot
from alseg.report import finished_results, mean_std, save_figure, save_tables
from alseg.rundir import RunDir
from alseg.schema import TEXT_DATA


def is_prune_run(run_dir: Path | str) -> bool:
    path = RunDir(run_dir).config_path
    if not path.is_file():
        return False
    cfg = OmegaConf.load(path)
    return isinstance(cfg, DictConfig) and cfg.get("task", "active") == "prune"


def load_retrains(run_dirs: Sequence[Path | str]) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished retrain run: data, rule, score, keep, seed, test metrics."""
    rows: list[dict] = []
    notes: list[str] = []
    for d, res, cfg in finished_results(run_dirs, notes):
        if res.get("stage") != "retrain":
            continue  # scoring runs
        # a text rule names its score (no "by"); random names none
        by = "" if res["rule"] in ("random", "random_balanced") else res.get("by", "")
        rows.append(
            {
                "run": d.name,
                "data": str(cfg.data.name),
                "setting": "full data" if res["keep"] == 1.0 else f"{res['rule']} {by}".strip(),
                "keep": float(res["keep"]),
                "seed": int(cfg.seed),
                **{k: float(res[k]) for k in METRICS if k in res},
            }
        )
    return pd.DataFrame(rows), notes


# the test metrics of a retrain: images (mIoU, acc, val_mIoU), text (loss, exact match,
# the removals' precision: alseg.text.run)
METRICS = ("mIoU", "acc", "val_mIoU", "test_loss", "em_all", "precision")
METRIC_NAMES = {
    "test_loss": "test loss of the responses, lower is better",
    "em_all": "test exact match, %",
    "precision": "defective share of the removed examples, %",
}


def retrain_table(df: pd.DataFrame, metric: str | None = None) -> str:
    """Markdown per data set: one row per setting, a column per kept fraction (mean ± std
    over seeds); the full-data row fills every column with its one value. ``metric``:
    None = each data set's own (``metric_of``)."""
    if df.empty:
        raise ValueError("no finished pruning retrain run among the given folders")
    out = []
    if metric is not None and metric not in df:
        raise ValueError(f"--metric {metric}: the runs record {[m for m in METRICS if m in df]}")
    chosen = metric
    for data, g in df.groupby("data"):
        metric = chosen or metric_of(g)
        digits = 3 if metric == "test_loss" else 1
        keeps = sorted(g.loc[g.keep < 1.0, "keep"].unique(), reverse=True)
        head = " | ".join(f"keep {100 * k:.0f} %" for k in keeps)
        lines = [
            f"**{data}** ({METRIC_NAMES.get(metric, f'test {metric}')})",
            "",
            f"| setting | {head} |",
            "|" + "---|" * (len(keeps) + 1),
        ]
        full = g[g.keep == 1.0][metric]
        if len(full):
            cell = mean_std(full, digits)
            lines.append(f"| full data (100 %) | {cell} |" + " |" * (len(keeps) - 1))
        for setting, s in sorted(g[g.keep < 1.0].groupby("setting"), key=lambda t: t[0]):
            cells = [mean_std(s[s.keep == k][metric], digits) for k in keeps]
            lines.append(f"| {setting} | " + " | ".join(cells) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def plot_retrains(df: pd.DataFrame, path: Path, metric: str | None = None) -> None:
    """Test metric vs kept fraction, one line per setting (mean ± std band), a panel per
    data set (``metric`` None: each data set's own)."""
    plt = _pyplot()
    sets = sorted(df.data.unique())
    fig, axes = plt.subplots(1, len(sets), figsize=(5.5 * len(sets), 4), squeeze=False)
    chosen = metric
    for ax, data in zip(axes[0], sets):
        g = df[df.data == data]
        metric = chosen or metric_of(g)
        full = g[g.keep == 1.0][metric]
        for setting, s in sorted(g[g.keep < 1.0].groupby("setting"), key=lambda t: t[0]):
            stats = s.groupby("keep")[metric].agg(["mean", "std"]).fillna(0.0)
            if len(full):
                stats.loc[1.0] = [full.mean(), full.std(ddof=0) if len(full) > 1 else 0.0]
            stats = stats.sort_index()
            x = 100 * stats.index.to_numpy()
            ax.plot(x, stats["mean"], marker="o", label=setting)
            ax.fill_between(
                x, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.15
            )
        ax.set_xlabel(f"kept training {'examples' if data in TEXT_DATA else 'images'} (%)")
        ax.set_ylabel(METRIC_NAMES.get(metric, f"test {metric}"))
        ax.set_title(data)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def metric_of(df: pd.DataFrame) -> str:
    """acc for classification sets (shapes, imagefolder_da), the response loss for
    instruction data, mIoU otherwise."""
    if set(df.data) <= set(TEXT_DATA):
        return "test_loss"
    return "acc" if set(df.data) <= {"shapes", "imagefolder_da"} else "mIoU"


def write_prune_report(
    run_dirs: Sequence[Path | str], out: Path, metric: str | None = None
) -> list[str]:
    df, notes = load_retrains(run_dirs)
    save_tables(df, retrain_table(df, metric), out)
    plot_retrains(df, out / "pruning.png", metric)
    return notes
