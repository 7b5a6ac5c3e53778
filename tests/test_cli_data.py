"""`alseg data check`, `alseg regions` and `alseg run` on folder data sets."""

from __future__ import annotations

import csv

import numpy as np
from layout_fixtures import folder_tree, photo_folder_tree, save

from alseg.cli import main


def test_data_check_reports_frequencies_and_names_bad_files(tmp_path, capsys):
    root = folder_tree(tmp_path / "f", {"train": 4, "val": 2, "test": 2})
    args = ["data", "check", "data=folder", f"data.root={root}", "data.num_classes=3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train: 4 images, sizes (HxW) 32x32, 40x56, 0 problem(s)" in out
    assert "ignore" in out and "25.00" in out  # 4 equal stripes: 0, 1, 2, 255
    save(root / "masks" / "test" / "img001.png", np.full((32, 32), 9, np.uint8))
    (root / "images" / "val" / "img000.jpg").write_bytes(b"\xff\xd8broken")
    args.append("data.image_size=[32,32]")  # the size check is at load time for this one
    assert main(args[:-1]) == 2  # the broken image fails at open (header) time
    err = capsys.readouterr().err
    assert "img000.jpg" in err and "unreadable" in err
    save(root / "images" / "val" / "img000.jpg", np.zeros((32, 32, 3), np.uint8))
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "test: 2 images" in out and "1 problem(s)" in out
    assert "error:" in out and "img001.png" in out and "[9]" in out


def test_regions_command_reports_throughput_and_resumes(tmp_path, capsys):
    root = folder_tree(tmp_path / "f", {"train": 6, "val": 1, "test": 1})
    args = [
        "regions",
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "regions.method=grid",
        f"regions.cache_dir={tmp_path / 'cache'}",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "6 images" in out and "computed 6 in" in out and "images/s" in out
    assert main(args) == 0
    assert "all from the cache" in capsys.readouterr().out


def test_run_on_a_folder_of_photographs(tmp_path, capsys):
    root = photo_folder_tree(tmp_path / "photos", {"train": 10, "val": 2, "test": 3})
    run_dir = tmp_path / "run"
    args = [
        "run",
        "data=folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.class_names=[dark,mid,bright]",
        "data.crop_size=[32,48]",
        "data.scale_range=[0.75,1.5]",
        "data.batch_size=4",
        "data.pool_batch_size=3",
        "regions.n_segments=16",
        f"regions.cache_dir={tmp_path / 'cache'}",
        "regions.num_workers=1",
        "active.rounds=2",
        "active.budget=10",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        f"run_dir={run_dir}",
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(float(r["clicks"])) for r in rows] == [10, 20]
    assert {"IoU_dark", "IoU_mid", "IoU_bright"} <= set(rows[0])  # the configured names
    assert all(0 <= float(r["mIoU"]) <= 100 for r in rows)
    assert (run_dir / "overlays" / "round_01.png").is_file()
