"""alseg.diagnose (the real-photo diagnosis): region sums against obvious loops, the
calibration error and the class distance by hand, and a run dir end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import load_script, tiny_overrides
from rich.console import Console

from alseg.build import build_loop
from alseg.config import compose
from alseg.diagnose import (
    ECE_BINS,
    expected_calibration_error,
    pixel_stats,
    region_class_counts,
    total_variation,
)


def test_region_class_counts_against_a_loop():
    rng = np.random.default_rng(0)
    maps = [rng.integers(0, 3, (4, 5)), rng.integers(0, 2, (4, 5))]
    masks = [rng.integers(0, 4, (4, 5)), rng.integers(0, 4, (4, 5))]  # class 3 = void (C = 3)
    offsets = np.array([0, 3, 5])
    out = region_class_counts(lambda i: maps[i], lambda i: masks[i], 2, offsets, 3)
    expected = np.zeros((5, 3), dtype=np.int64)
    for i in range(2):
        for y in range(4):
            for x in range(5):
                if masks[i][y, x] < 3:
                    expected[offsets[i] + maps[i][y, x], masks[i][y, x]] += 1
    np.testing.assert_array_equal(out, expected)


def test_pixel_stats_against_a_loop():
    torch.manual_seed(0)
    probs = torch.rand(3, 4, 6).softmax(dim=0)
    mask = torch.randint(0, 4, (4, 6))  # 3 = void
    regions = torch.randint(0, 3, (4, 6))
    s = pixel_stats(probs, mask, regions, 3)
    for r in range(3):
        px = [(y, x) for y in range(4) for x in range(6) if regions[y, x] == r]
        valid = [(y, x) for y, x in px if mask[y, x] < 3]
        wrong = [(y, x) for y, x in valid if probs[:, y, x].argmax() != mask[y, x]]
        bvsb = sum(float(probs[:, y, x].sort().values[-2] / probs[:, y, x].max()) for y, x in px)
        assert (s.pixels[r], s.valid[r], s.errors[r]) == (len(px), len(valid), len(wrong))
        assert s.bvsb[r] == pytest.approx(bvsb)
        conf = [float(probs[:, y, x].max()) for y, x in valid]
        assert s.bin_count[r].sum() == len(valid) and s.bin_conf[r].sum() == pytest.approx(
            sum(conf)
        )
        b = min(int(conf[0] * ECE_BINS), ECE_BINS - 1) if conf else 0
        assert not conf or s.bin_count[r, b] >= 1


def test_calibration_error_and_class_distance_by_hand():
    # bin 1: 10 pixels at confidence 0.6, 4 right (gap 0.2); bin 2: 30 at 0.9, 27 right (0)
    count, conf, correct = np.array([0, 10, 30]), np.array([0, 6.0, 27.0]), np.array([0, 4, 27])
    assert expected_calibration_error(count, conf, correct) == pytest.approx(100 * 10 / 40 * 0.2)
    assert np.isnan(expected_calibration_error(np.zeros(3), np.zeros(3), np.zeros(3)))
    assert total_variation(np.array([2, 2, 0]), np.array([0, 1, 1])) == pytest.approx(0.5)
    assert total_variation(np.array([1, 3]), np.array([10, 30])) == 0


def test_diagnosis_of_a_run(tmp_path):
    cfg = compose(tiny_overrides(tmp_path, "active.strategy=bvsb", "active.keep_checkpoints=3"))
    run = tmp_path / "bvsb-seed0"
    loop = build_loop(cfg, run, False, Console(quiet=True), False)
    loop.run()
    script = load_script("real_photos_diagnosis")
    rows = script.diagnose_run(run)
    assert [r["round"] for r in rows] == [1, 2] and rows[0]["setting"] == "bvsb"
    metrics = pd.read_csv(run / "metrics.csv")
    sizes = loop.dm.regions.region_sizes()
    for row in rows:
        r = row["round"]
        sel = pd.read_csv(run / "selections" / f"round_{r:02d}.csv")
        gid = loop.dm.regions.offsets[sel["image"].to_numpy()] + sel["region"].to_numpy()
        assert row["regions"] == len(sel)
        # pixels per click: the selected regions' area over the round's clicks
        assert row["px_per_click"] == pytest.approx(sizes[gid].sum() / sel["cost"].sum())
        assert row["model_mIoU"] == pytest.approx(metrics["mIoU"][r - 1])
        assert 0 <= row["error_sel"] <= 100 and -1 <= row["spearman_bvsb_error"] <= 1
    assert "| bvsb | 1 | 1 |" in script.table(pd.DataFrame(rows))
