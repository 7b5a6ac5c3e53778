"""data=imagefolder_da: Office-Home style <root>/<domain>/<class>/ folders."""

from __future__ import annotations

import pytest
from layout_fixtures import imagefolder_tree

from alseg.config import compose
from alseg.data.datasets import DataError
from alseg.parts import build_datasets, build_source
from alseg.schema import settings


def cfg(root, *extra):
    return settings(compose(["data=imagefolder_da", f"data.root={root}", *extra])).data


def test_domains_classes_and_target_split(tmp_path):
    root = imagefolder_tree(tmp_path / "oh")
    d = cfg(root, "data.image_size=[16,20]", "data.val_holdout=2", "data.test_fraction=0.25")
    pool, val, test = build_datasets(d)
    source = build_source(d)
    assert pool.class_names == ("Bike", "Cup", "Fan") and len(source) == 12
    assert (len(pool), len(val), len(test)) == (7, 2, 3)  # 12 Clipart images
    paths = [p for ds in (pool, val, test) for p, _ in ds.samples]
    assert len(set(paths)) == 12 and all("Clipart" in str(p) for p in paths)
    item = pool[0]
    assert item["image"].shape == (3, 16, 20) and item["mask"].shape == (16, 20)
    label = pool.samples[0][1]
    assert (item["mask"] == label).all()
    assert pool.class_names[label].lower() in pool.samples[0][0].name
    again = build_datasets(d)[0]
    assert again.samples == pool.samples  # the split depends on data.seed only


def test_errors_name_the_folder_or_line(tmp_path):
    root = imagefolder_tree(tmp_path / "oh")
    with pytest.raises(DataError, match=r"Sketch not found; domains under .*\['Art', 'Clipart'\]"):
        build_datasets(cfg(root, "data.target_domain=Sketch"))
    (root / "src.txt").write_text("Art/Bike/bike_0.jpg 7\n")
    with pytest.raises(DataError, match=r"src.txt, line 1: label 7 outside 0..2"):
        build_source(cfg(root, "data.lists.source=src.txt"))
    with pytest.raises(DataError, match="leave no pool"):
        build_datasets(cfg(root, "data.test_fraction=0.9"))
