"""`alseg report` over run dirs (with bad input) and the local sweep fallback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.cli import main
from alseg.config import compose
from alseg.report import load_runs, markdown_table
from alseg.sweep import grid, run_name


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    for strategy in ("random", "entropy"):
        for seed in (0, 1):
            cfg = compose(
                tiny_overrides(
                    tmp, "active.rounds=2", f"active.strategy={strategy}", f"seed={seed}"
                )
            )
            build_loop(
                cfg, tmp / "runs" / f"{strategy}-seed{seed}", False, Console(quiet=True), False
            ).run()
    return tmp / "runs"


def test_report_writes_table_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["report", *map(str, sorted(runs.iterdir())), "--out", str(out)]) == 0
    df = pd.read_parquet(out / "runs.parquet")
    assert len(df) == 4 * 2 and set(df.setting) == {"random", "entropy"}  # run x round rows
    pd.testing.assert_frame_equal(df, pd.read_csv(out / "runs.csv"), check_dtype=False)
    assert (out / "curves.png").stat().st_size > 0 and (out / "classes.png").stat().st_size > 0
    table = (out / "table.md").read_text()
    assert "| entropy | 2 |" in table and "| random | 2 |" in table
    # mean ± std: check one cell by hand
    m = df[(df.setting == "random") & (df["round"] == 1)]["mIoU"]
    assert f"{m.mean():.1f} ± {m.std(ddof=0):.1f}" in table.splitlines()[3]


def test_report_names_bad_input_and_keeps_complete_rounds(runs, tmp_path, capsys):
    killed = tmp_path / "entropy-seed9"
    shutil.copytree(runs / "entropy-seed0", killed)
    state = json.loads((killed / "state.json").read_text())
    state.update(round=1, phase="labeled")  # killed while training round 1
    (killed / "state.json").write_text(json.dumps(state))
    lines = (killed / "metrics.csv").read_text().splitlines(True)
    (killed / "metrics.csv").write_text("".join(lines[:2]))  # only round 0 complete
    stranger = tmp_path / "notes"
    stranger.mkdir()
    df, notes = load_runs([runs / "random-seed0", killed, stranger])
    assert any("notes: not an alseg run dir" in n for n in notes)
    assert any("entropy-seed9: unfinished (stopped in round 1, phase labeled)" in n for n in notes)
    assert sorted(df[df.run == "entropy-seed9"]["round"]) == [0]
    assert "| entropy | 1 |" in markdown_table(df)
    assert main(["report", str(stranger), "--out", str(tmp_path / "r")]) == 2
    assert "no run dir with complete rounds" in capsys.readouterr().err


def test_metrics_with_nan_cells_load_as_nan(runs, tmp_path):
    # a column that is NaN in some rounds (sieve or label-distribution stats in round 0)
    run = tmp_path / "random-seed5"
    shutil.copytree(runs / "random-seed0", run)
    df = pd.read_csv(run / "metrics.csv")
    df["sieve_kept_acc"] = ["nan", "91.5"]
    df.to_csv(run / "metrics.csv", index=False)
    table, _ = load_runs([run])
    assert table["sieve_kept_acc"].isna().tolist() == [True, False]
    assert table["sieve_kept_acc"].iloc[1] == 91.5


def test_sweep_grid_and_local_run(tmp_path, capsys):
    spec = {
        "program": "alseg",
        "method": "grid",
        "parameters": {
            "active.strategy": {"values": ["random", "bvsb"]},
            "seed": {"value": 0},
            "logger.mode": {"value": "online"},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert (
        len(grid(spec)) == 2
        and run_name({"active.strategy": "bvsb", "seed": 0}) == "strategy-bvsb-seed0"
    )
    out = tmp_path / "out"
    extra = [o for o in tiny_overrides(tmp_path, "active.rounds=2") if not o.startswith("logger")]
    assert main(["sweep", str(path), *extra, "--local", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["strategy-bvsb-seed0", "strategy-random-seed0"]
    assert all(not (d / "wandb").exists() for d in out.iterdir())  # W&B off in the fallback
    capsys.readouterr()
    assert main(["sweep", str(path), *extra, "--local", "--out", str(out)]) == 0  # done: skipped
    assert capsys.readouterr().out.count("done, skipped") == 2
    bayes = tmp_path / "bayes.yaml"
    bayes.write_text(yaml.safe_dump({"parameters": {"model.lr": {"min": 0.1, "max": 1.0}}}))
    assert main(["sweep", str(bayes), "--local"]) == 2
    assert "not a grid parameter" in capsys.readouterr().err


def test_one_broken_run_dir_is_named_and_the_rest_reported(runs, tmp_path, capsys):
    """A damaged metrics.csv (or state.json) among good run dirs: named with its reason,
    skipped, and the good runs are reported (summarize and report)."""
    broken = tmp_path / "entropy-seed7"
    shutil.copytree(runs / "entropy-seed0", broken)
    (broken / "metrics.csv").write_text("round,clicks,mIoU\n0,100,abc\n1,200\n")
    torn = tmp_path / "entropy-seed8"
    shutil.copytree(runs / "entropy-seed1", torn)
    (torn / "state.json").write_text("{not json")
    good = [str(p) for p in sorted(runs.iterdir())]
    assert main(["summarize", *good, str(broken), str(torn)]) == 0
    out, err = capsys.readouterr()
    assert "| entropy | 2 |" in out and "| random | 2 |" in out
    assert f"{broken / 'metrics.csv'}" in err and "skipped" in err
    assert f"{torn / 'state.json'}" in err
    assert main(["report", *good, str(broken), "--out", str(tmp_path / "rep")]) == 0
    assert "metrics.csv" in capsys.readouterr().err
    assert len(pd.read_csv(tmp_path / "rep" / "runs.csv")) == 8


def test_a_broken_results_file_is_named_and_skipped(tmp_path):
    from alseg.report import finished_results

    good, bad = tmp_path / "good", tmp_path / "bad"
    for d in (good, bad):
        d.mkdir()
        (d / "config.yaml").write_text("seed: 0\n")
    (good / "results.json").write_text('{"mIoU": 40.0}')
    (bad / "results.json").write_text('{"mIoU": 4')
    notes: list[str] = []
    found = list(finished_results([good, bad], notes))
    assert [(d, r) for d, r, _ in found] == [(good, {"mIoU": 40.0})]
    assert len(notes) == 1 and str(bad) in notes[0] and "results.json" in notes[0]
