"""The study protocol (alseg.study, alseg report --baseline --full): paired differences,
the normalised area under the learning curve and the bootstrap, pinned by hand-computed
answers; the report end to end on real run dirs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.cli import main
from alseg.config import compose
from alseg.study import (
    AUC,
    bootstrap_ci,
    full_reference,
    normalised_auc,
    paired_stats,
    paired_table,
    summary_table,
)


def test_normalised_auc_known_curves():
    # trapezoids: (10 + 20) / 2 * 100 + (20 + 40) / 2 * 200 = 7500, over 300 clicks
    assert normalised_auc([100, 200, 400], [10, 20, 40]) == pytest.approx(25.0)
    assert normalised_auc([0, 50, 60], [30, 30, 30]) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="increase"):
        normalised_auc([100, 100], [1, 2])
    with pytest.raises(ValueError, match=">= 2"):
        normalised_auc([100], [1])


def test_bootstrap_known_answers_and_reference_loop():
    # [1, 2, 3]: P(mean = 1) = P(mean = 3) = 1/27 > 2.5 %, so the interval is the range
    assert bootstrap_ci([1, 2, 3]) == (1.0, 3.0)
    # [0, 0, 0, 10]: the number of 10s drawn is Binomial(4, 1/4); P(>= 3) = 5.1 % and
    # P(4) = 0.4 %, so the 97.5 % quantile is three 10s in four: 7.5; the 2.5 % one is 0
    assert bootstrap_ci([0, 0, 0, 10]) == (0.0, 7.5)
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    # the vectorised draw against an obvious loop over the same generator stream
    v = np.array([0.3, -1.2, 2.5, 0.9, 1.7])
    rng = np.random.default_rng(7)
    idx = rng.integers(0, len(v), size=(500, len(v)))
    means = sorted(sum(v[j] for j in row) / len(v) for row in idx)
    expected = tuple(np.quantile(means, [0.025, 0.975]))
    assert bootstrap_ci(v, resamples=500, seed=7) == pytest.approx(expected)
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3)  # a fixed generator
    exact = sorted(np.mean(r) for r in itertools.product(v, repeat=len(v)))
    lo, hi = bootstrap_ci(v)  # close to the exact bootstrap over all 5^5 resamples
    assert lo == pytest.approx(np.quantile(exact, 0.025), abs=0.05)
    assert hi == pytest.approx(np.quantile(exact, 0.975), abs=0.05)


def curves(values: dict[str, dict[int, list[float]]], clicks=(100.0, 200.0)) -> pd.DataFrame:
    """Rows of load_runs: setting -> seed -> metric per round."""
    rows = []
    for setting, seeds in values.items():
        for seed, ys in seeds.items():
            for r, (x, y) in enumerate(zip(clicks, ys)):
                run = f"{setting}-seed{seed}"
                rows.append(
                    {"run": run, "setting": setting, "seed": seed, "round": r, "clicks": x,
                     "mIoU": y}
                )  # fmt: skip
    return pd.DataFrame(rows)


BASE = {0: [10.0, 20.0], 1: [12.0, 22.0], 2: [14.0, 24.0]}
OTHER = {0: [11.0, 19.0], 1: [15.0, 25.0], 2: [14.0, 30.0]}


def test_paired_table_hand_computed():
    df = curves({"random": BASE, "bvsb": OTHER, "solo": {5: [1.0, 2.0], 0: [10.0, 20.0]}})
    t = paired_table(df, "random").set_index(["setting", "round"])
    r0, r1, auc = t.loc[("bvsb", 0)], t.loc[("bvsb", 1)], t.loc[("bvsb", AUC)]
    # round 0: differences 1, 3, 0; round 1: -1, 3, 6; AUC (mean of 2 points): 0, 3, 3
    assert (r0["n"], r0["mean"], r0["min"], r0["max"], r0["wins"]) == (3, 4 / 3, 0, 3, 2)
    assert (r1["mean"], r1["min"], r1["max"], r1["wins"]) == (8 / 3, -1, 6, 2)
    assert (auc["mean"], auc["min"], auc["max"], auc["wins"]) == (2, 0, 3, 2)
    assert r0["clicks"] == 100 and pd.isna(auc["clicks"])
    assert (r1["lo"], r1["hi"]) == bootstrap_ci([-1, 3, 6])
    # only the seed both have is paired (seed 5 of 'solo' has no baseline run)
    assert t.loc[("solo", 1)]["n"] == 1 and t.loc[("solo", 1)]["mean"] == 0
    assert ("random", 0) not in t.index


def test_paired_table_refuses_what_cannot_be_paired():
    with pytest.raises(ValueError, match="no setting.*valid: \\['bvsb', 'random'\\]"):
        paired_table(curves({"random": BASE, "bvsb": OTHER}), "entropy")
    twice = curves({"random": BASE, "bvsb": OTHER})
    twice.loc[twice.run == "bvsb-seed1", "seed"] = 0
    with pytest.raises(ValueError, match="several runs of seed 0 .*bvsb-seed0, bvsb-seed1"):
        paired_table(twice, "random")
    with pytest.raises(ValueError, match="shares no seed"):
        paired_table(curves({"random": BASE, "bvsb": {7: [1.0, 2.0]}}), "random")


def test_summary_and_share_of_full_supervision():
    df = curves({"random": BASE, "bvsb": OTHER})
    full = curves({"full": {0: [39.0], 1: [41.0]}}, clicks=(9000.0,))
    mean, std, n = full_reference(full)
    assert (mean, std, n) == (40.0, 1.0, 2)
    paired = paired_table(df, "random")
    text = summary_table(df, paired, "random", mean)
    row = next(line for line in text.splitlines() if line.startswith("| bvsb"))
    # last round 24.7 of 40 = 62 %; AUC (15 + 20 + 22) / 3 = 19.0 -> 48 %
    assert "| 24.7 ± 4.5 |" in row and "| 62 % |" in row and "| 48 % |" in row
    assert paired_stats([-1, 3, 6]).cell() in row  # the paired last-round cell
    assert "| random | 3 |" in text and "(baseline)" in text


def test_summary_names_the_clicks_runs_spent_when_they_differ():
    """Multi-class answers cannot always fill a round's budget (496 of 500 clicks): the
    header gives the clicks as spent, not a mean with decimals."""
    df = curves({"random": BASE, "bvsb": OTHER})
    assert "mIoU at 200 clicks" in summary_table(df, None, None, None)
    df.loc[(df.setting == "bvsb") & (df["round"] == 1), "clicks"] = 196.0
    head = summary_table(df, None, None, None).splitlines()[0]
    assert "mIoU at 196-200 clicks" in head and "AUC (100 to 196-200 clicks)" in head


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """random and bvsb at seeds 0 and 1, 2 rounds; a full-supervision run."""
    tmp = tmp_path_factory.mktemp("study")
    runs = [(s, seed, [f"active.strategy={s}"]) for s in ("random", "bvsb") for seed in (0, 1)]
    runs.append(("full", 0, ["active.full_supervision=true"]))
    for name, seed, extra in runs:
        cfg = compose(tiny_overrides(tmp, "active.rounds=2", f"seed={seed}", *extra))
        build_loop(
            cfg, tmp / "runs" / f"{name}-seed{seed}", False, Console(quiet=True), False
        ).run()
    return tmp / "runs"


def test_full_supervision_run_labels_every_pool_pixel(study):
    metrics = pd.read_csv(study / "full-seed0" / "metrics.csv")
    assert metrics["round"].tolist() == [0]  # one round, whatever active.rounds says
    assert metrics["labeled_pixels_pct"].iloc[0] == 100.0
    config = (study / "full-seed0" / "config.yaml").read_text()
    assert "type: pixel" in config and "rounds: 1" in config


def test_full_supervision_refuses_method_plugins():
    from alseg.config import ConfigError

    with pytest.raises(ConfigError, match="full_supervision=true .* cannot run stage2"):
        compose(["experiment=mulactseg_synthetic", "active.full_supervision=true"])


def test_report_with_baseline_and_full(study, tmp_path, capsys):
    out = tmp_path / "rep"
    runs = [str(study / f"{s}-seed{seed}") for s in ("random", "bvsb") for seed in (0, 1)]
    args = ["report", *runs, "--baseline", "random", "--full", str(study / "full-seed0")]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    df = pd.read_parquet(out / "runs.parquet")
    paired = pd.read_csv(out / "paired.csv")
    b = df[df.setting == "bvsb"].set_index(["seed", "round"])["mIoU"]
    r = df[df.setting == "random"].set_index(["seed", "round"])["mIoU"]
    row = paired[(paired.setting == "bvsb") & (paired["round"] == "1")].iloc[0]
    diffs = [b[(s, 1)] - r[(s, 1)] for s in (0, 1)]
    assert row["mean"] == pytest.approx(np.mean(diffs)) and row["n"] == 2
    assert row["wins"] == sum(d > 0 for d in diffs)
    full = pd.read_csv(out / "full.csv")["mIoU"].iloc[0]
    share = f"{100 * b[(slice(None), 1)].mean() / full:.0f} %"
    summary = (out / "summary.md").read_text()
    assert share in summary and summary in printed
    text = (out / "paired.md").read_text()
    assert "| bvsb | 1 | 16 | 2 |" in text and "| bvsb | AUC | — | 2 |" in text
    assert (out / "curves.png").stat().st_size > 0
    assert main([*args[:-2], "--baseline", "entropy", "--out", str(out)]) == 2
    assert "--baseline 'entropy' is no setting" in capsys.readouterr().err
