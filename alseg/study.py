"""The study protocol: methods compared with paired seeds.

Runs of one seed share their round-0 set and their model initialisation, so the fair
comparison of a setting with a baseline is the *paired* difference, run against run of the
same seed, round by round: d_s = metric(setting, seed s) - metric(baseline, seed s). Per
setting and round this module gives the mean of d over seeds, its range, a percentile
bootstrap 95 % interval over seeds and the number of seeds where the setting wins (d > 0).
The same statistics are given for the normalised area under the learning curve (AUC: the
metric integrated over clicks with the trapezoid rule, divided by the click range, i.e. the
curve's mean height), which sums a whole curve in one number. A full-supervision reference
(every pool pixel labeled) turns each setting's metric into a share of what full labels
reach.

With 3 seeds a bootstrap interval is coarse (27 equally likely resamples); it is reported
with the seeds' range and win count, never alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

RESAMPLES = 10_000
AUC = "AUC"  # the ``round`` entry of area rows


def normalised_auc(clicks: Sequence[float], values: Sequence[float]) -> float:
    """Area under ``values`` over ``clicks`` (trapezoid) divided by the click range: the
    curve's mean height, in the metric's units.

    Raises:
        ValueError: fewer than 2 points, or clicks not strictly increasing.
    """
    x, y = np.asarray(clicks, dtype=float), np.asarray(values, dtype=float)
    if len(x) < 2 or len(x) != len(y):
        raise ValueError(f"an area needs >= 2 (clicks, value) points, got {len(x)}/{len(y)}")
    if not (np.diff(x) > 0).all():
        raise ValueError(f"clicks must increase from round to round: {x.tolist()}")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``: ``resamples`` draws of
    len(values) values with replacement from ``numpy.random.default_rng(seed)``, the
    (1 - level) / 2 and (1 + level) / 2 quantiles of their means."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("a bootstrap interval needs at least one value")
    if not 0 < level < 1:
        raise ValueError(f"level={level} must be between 0 and 1")
    idx = np.random.default_rng(seed).integers(0, len(v), size=(resamples, len(v)))
    means = v[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Paired:
    """Statistics of paired differences over seeds."""

    n: int
    mean: float
    lo: float  # bootstrap 95 % interval of the mean
    hi: float
    min: float
    max: float
    wins: int  # seeds where the difference is > 0

    def cell(self) -> str:
        """``+1.2 [-0.3, +2.5]``-style text: mean, interval, range and wins."""
        return (
            f"{self.mean:+.1f} [{self.lo:+.1f}, {self.hi:+.1f}] "
            f"({self.min:+.1f}..{self.max:+.1f}), {self.wins}/{self.n}"
        )


def paired_stats(diffs: Sequence[float] | np.ndarray, seed: int = 0) -> Paired:
    """Mean, bootstrap interval, range and wins of the paired differences ``diffs``."""
    d = np.asarray(diffs, dtype=float)
    lo, hi = bootstrap_ci(d, seed=seed)
    return Paired(
        len(d), float(d.mean()), lo, hi, float(d.min()), float(d.max()), int((d > 0).sum())
    )


def common_rounds(df: pd.DataFrame) -> int:
    """The number of rounds every run of ``df`` completed."""
    return int(df.groupby("run")["round"].max().min()) + 1


def run_aucs(df: pd.DataFrame, metric: str = "mIoU", rounds: int | None = None) -> pd.DataFrame:
    """One row per run: run, setting, seed and the normalised AUC of ``metric`` over its
    first ``rounds`` rounds (default: the rounds every run completed)."""
    rounds = common_rounds(df) if rounds is None else rounds
    rows = []
    for run, g in df[df["round"] < rounds].groupby("run", sort=True):
        g = g.sort_values("round")
        auc = normalised_auc(g["clicks"], g[metric])
        rows.append({"run": run, "setting": g.setting.iloc[0], "seed": g.seed.iloc[0], AUC: auc})
    return pd.DataFrame(rows)


def _by_seed(df: pd.DataFrame, setting: str, value: str, index: str) -> pd.DataFrame:
    """``value`` of ``setting``'s runs, one column per seed; a seed run twice is refused."""
    g = df[df.setting == setting]
    twice = g.groupby("seed")["run"].nunique()
    if (twice > 1).any():
        seed = int(twice[twice > 1].index[0])
        runs = sorted(g[g.seed == seed].run.unique())
        raise ValueError(
            f"setting {setting!r} has several runs of seed {seed} ({', '.join(runs)}); "
            "a paired comparison needs one run per seed"
        )
    return g.pivot(index=index, columns="seed", values=value)


def paired_table(
    df: pd.DataFrame, baseline: str, metric: str = "mIoU", seed: int = 0
) -> pd.DataFrame:
    """Paired differences of every setting to ``baseline`` (rows of ``load_runs``), per round
    of the common rounds and for the AUC (round ``"AUC"``): setting, round, clicks (the
    baseline's mean), and the fields of ``Paired``. Only seeds both have are paired.

    Raises:
        ValueError: ``baseline`` is not a setting of ``df``; a seed run twice; no common seed.
    """
    settings = sorted(df.setting.unique())
    if baseline not in settings:
        raise ValueError(f"--baseline {baseline!r} is no setting of these runs; valid: {settings}")
    rounds = common_rounds(df)
    within = df[df["round"] < rounds]
    base = _by_seed(within, baseline, metric, "round")
    clicks = within[within.setting == baseline].groupby("round")["clicks"].mean()
    aucs = run_aucs(df, metric, rounds)
    base_auc = _by_seed(aucs, baseline, AUC, "setting").iloc[0]
    rows = []
    for setting in settings:
        if setting == baseline:
            continue
        other = _by_seed(within, setting, metric, "round")
        seeds = sorted(set(other.columns) & set(base.columns))
        if not seeds:
            raise ValueError(f"setting {setting!r} shares no seed with {baseline!r}")
        for r in range(rounds):
            diffs = other.loc[r, seeds] - base.loc[r, seeds]
            stats = paired_stats(diffs.to_numpy(), seed)
            rows.append({"setting": setting, "round": r, "clicks": clicks[r], **asdict(stats)})
        other_auc = _by_seed(aucs, setting, AUC, "setting").iloc[0]
        stats = paired_stats((other_auc[seeds] - base_auc[seeds]).to_numpy(), seed)
        rows.append({"setting": setting, "round": AUC, "clicks": np.nan, **asdict(stats)})
    return pd.DataFrame(rows)


def full_reference(full: pd.DataFrame, metric: str = "mIoU") -> tuple[float, float, int]:
    """Mean, std (population) and number of the full-supervision runs' ``metric`` (their
    last round)."""
    last = full[full["round"] == full.groupby("run")["round"].transform("max")]
    v = last[metric].astype(float)
    return float(v.mean()), float(v.std(ddof=0)), len(v)


def _span(clicks: pd.Series) -> str:
    """The clicks the runs spent: one number, or min-max where they differ (multi-class
    answers cannot always fill a round's budget exactly)."""
    lo, hi = float(clicks.min()), float(clicks.max())
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


def summary_table(
    df: pd.DataFrame,
    paired: pd.DataFrame | None,
    baseline: str | None,
    full_mean: float | None,
    metric: str = "mIoU",
) -> str:
    """Markdown: per setting its runs, the metric at the last common round and the AUC (mean
    ± std over runs), their share of full supervision, and the paired differences to the
    baseline at the last round and over the AUC (mean [interval] (range), wins/seeds)."""
    rounds = common_rounds(df)
    last = df[df["round"] == rounds - 1]
    aucs = run_aucs(df, metric, rounds)
    first = df[df["round"] == 0].clicks
    head = [
        "setting",
        "runs",
        f"{metric} at {_span(last.clicks)} clicks",
        f"AUC ({_span(first)} to {_span(last.clicks)} clicks)",
    ]
    if full_mean is not None:
        head += ["% of full (last)", "% of full (AUC)"]
    if paired is not None:
        head += [f"Δ last vs {baseline}", f"Δ AUC vs {baseline}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def ms(v: pd.Series) -> str:
        return f"{v.mean():.1f} ± {v.std(ddof=0):.1f}" if len(v) > 1 else f"{v.iloc[0]:.1f}"

    for setting in sorted(df.setting.unique()):
        m = last[last.setting == setting][metric]
        a = aucs[aucs.setting == setting][AUC]
        cells = [setting, str(len(m)), ms(m), ms(a)]
        if full_mean is not None:
            cells += [f"{100 * m.mean() / full_mean:.0f} %", f"{100 * a.mean() / full_mean:.0f} %"]
        if paired is not None:
            if setting == baseline:
                cells += ["(baseline)", "(baseline)"]
            else:
                p = paired[paired.setting == setting].set_index("round")
                cells += [_cell(p.loc[rounds - 1]), _cell(p.loc[AUC])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(row: pd.Series) -> str:
    return Paired(**{k: row[k] for k in Paired.__dataclass_fields__}).cell()


def paired_markdown(paired: pd.DataFrame, baseline: str, metric: str = "mIoU") -> str:
    """Markdown: one row per setting and round (and AUC) of ``paired_table``."""
    lines = [
        f"| setting | round | clicks | seeds | Δ {metric} vs {baseline} (mean) | 95 % CI "
        "(bootstrap over seeds) | min..max | wins |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in paired.iterrows():
        clicks = "—" if pd.isna(r.clicks) else f"{r.clicks:g}"
        lines.append(
            f"| {r.setting} | {r['round']} | {clicks} | {r.n} | {r['mean']:+.2f} | "
            f"[{r.lo:+.2f}, {r.hi:+.2f}] | {r['min']:+.2f}..{r['max']:+.2f} | {r.wins}/{r.n} |"
        )
    return "\n".join(lines)
