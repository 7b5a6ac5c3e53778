"""`alseg bench acquisition --quick` prints its figures (slow: spawns processes)."""

from __future__ import annotations

import json

import pytest

from alseg.cli import main


@pytest.mark.slow
def test_bench_acquisition_quick(capsys):
    assert main(["bench", "acquisition", "--quick"]) == 0
    rows = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    names = [r["bench"] for r in rows]
    assert names == [
        "region_reduce",
        "budgeted_topk",
        "pool_scoring_memory",
        "kcenter",
        "badge",
        "lamda",
    ]
    assert rows[0]["reduce_ratio"] > 1  # the loop is slower on any machine
    assert rows[2]["peak_mib_4N"] > 0


def test_bench_regions_quick(capsys):
    assert main(["bench", "regions", "--quick", "--workers", "1"]) == 0
    rows = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")]
    done = {r["method"]: r for r in rows if "images_per_s" in r}
    assert set(done) == {"slic", "seeds"}  # opencv-contrib is a dev dependency
    for r in done.values():
        assert r["size"] == "256x512" and r["images"] == 2 and r["images_per_s"] > 0
        assert 100 < r["regions_per_image"] <= 2048 * 1.5


@pytest.mark.slow
def test_bench_committee_and_pruning_quick(capsys):
    assert main(["bench", "committee", "--quick"]) == 0
    assert main(["bench", "pruning", "--quick"]) == 0
    rows = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")]
    assert [r["bench"] for r in rows] == ["committee_epoch", "pruning_scores"]
    assert rows[0]["members"] == 40 and rows[0]["lwbc_s"] > 0 and rows[0]["single_head_s"] > 0
    assert rows[1]["images"] == 64 and rows[1]["plain_s"] > 0


def test_bench_scoring_quick_only(capsys):
    argv = ["bench", "scoring", "--quick", "--only", "bvsb", "stage2", "typiclust", "--budget", "5"]
    assert main(argv) == 0
    rows = [json.loads(s) for s in capsys.readouterr().out.splitlines() if s.startswith("{")]
    names = ["plain_predict", "score_bvsb", "select_typiclust", "stage2_pass"]
    assert [r["bench"] for r in rows] == names
    assert all(r["images"] == 8 and r["seconds"] > 0 for r in rows)
    assert 0 < rows[2]["selection_s"] < rows[2]["seconds"] and rows[2]["budget"] == 5
