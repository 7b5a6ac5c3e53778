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
    # every problem of every split, each naming its file: a bad value, an unreadable image,
    # a missing mask, a mask of another size
    save(root / "masks" / "test" / "img001.png", np.full((32, 32), 9, np.uint8))
    (root / "images" / "val" / "img000.jpg").write_bytes(b"\xff\xd8broken")
    (root / "masks" / "train" / "img002.png").unlink()
    save(root / "masks" / "train" / "img003.png", np.zeros((20, 20), np.uint8))
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "train: 4 images" in out and "2 problem(s)" in out
    assert "val: 2 images" in out and "test: 2 images" in out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 4
    assert any("img000.jpg" in e and "unreadable" in e for e in errors)
    assert any("img001.png" in e and "[9]" in e for e in errors)
    assert any("img002.* is missing" in e for e in errors)
    assert any("img003.png: mask size 20x20 differs" in e for e in errors)


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
