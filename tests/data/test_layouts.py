"""Real-data loaders on fixture trees in the official layouts: samples, id mapping, ignore
handling, splits, and input errors that name the offending file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from layout_fixtures import (
    CS_IDS,
    cityscapes_tree,
    folder_tree,
    gta5_tree,
    save,
    sbd_tree,
    voc_tree,
)

from alseg.config import compose
from alseg.data.cityscapes_labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, label_id_lut
from alseg.data.datasets import DataError
from alseg.data.layouts import build_source, build_splits
from alseg.schema import settings
from alseg.schema.data import FolderLists


def data_cfg(name: str, root: Path, *extra: str):
    return settings(compose([f"data={name}", f"data.root={root}", *extra])).data


def test_cityscapes_table_matches_cityscapesscripts():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    lut = label_id_lut()
    for lab in labels.labels:
        if lab.id < 0:
            continue  # license plate: not stored in labelIds files
        assert lut[lab.id] == (255 if lab.trainId in (255, -1) else lab.trainId), lab.name
    train = sorted((lab.trainId, lab.name, lab.color) for lab in labels.labels)
    train = [t for t in train if 0 <= t[0] < 255]
    assert list(CITYSCAPES_CLASSES) == [t[1] for t in train]
    assert list(CITYSCAPES_PALETTE) == [tuple(t[2]) for t in train]
    assert (lut[34:] == -1).all()


def test_cityscapes_samples_mapping_and_holdout(tmp_path):
    root = cityscapes_tree(tmp_path / "cs")
    pool, val, test = build_splits(data_cfg("cityscapes", root, "data.val_holdout=1"))
    assert (len(pool), len(val), len(test)) == (3, 1, 2)
    assert pool.num_classes == 19 and pool.class_names[13] == "car"
    assert not set(pool.pairs) & set(val.pairs)  # the hold-out is not in the pool
    assert {p for p, _ in pool.pairs + val.pairs} == set(
        (root / "leftImg8bit" / "train").glob("*/*.png")
    )
    for ds in (pool, val, test):
        for i in range(len(ds)):
            item = ds[i]
            raw = ds.raw_mask(i)
            expected = np.vectorize(CS_IDS.get)(raw)
            np.testing.assert_array_equal(item["mask"].numpy(), expected)
            assert item["image"].shape[-2:] == item["mask"].shape
            assert item["image"].dtype.is_floating_point and item["image"].min() >= 0
    shapes = {tuple(pool[i]["mask"].shape) for i in range(len(pool))} | {
        tuple(val[0]["mask"].shape)
    }
    assert (24, 40) in shapes  # the non-square image
    # the hold-out depends on data.seed only
    again = build_splits(data_cfg("cityscapes", root, "data.val_holdout=1"))[1]
    assert again.pairs == val.pairs


def test_gta5_official_split_and_without_split_files(tmp_path):
    root = gta5_tree(tmp_path / "gta")
    pool, val, test = build_splits(
        data_cfg("gta5", root, "data.val_split=val", "data.test_split=test")
    )
    assert [p.name for p, _ in pool.pairs] == ["00001.png", "00002.png", "00003.png"]
    assert [p.name for p, _ in val.pairs] == ["00004.png"]
    assert test[0]["mask"].shape == (24, 40)
    assert set(np.unique(pool[0]["mask"].numpy())) == {0, 13, 255}
    bare = gta5_tree(tmp_path / "bare", split_mat=False)
    with pytest.raises(DataError, match="split.mat"):
        build_splits(data_cfg("gta5", bare, "data.val_holdout=1"))
    d = data_cfg("gta5", bare, "data.test_split=train", "data.val_holdout=1")
    pool, val, _ = build_splits(d)
    assert len(pool) + len(val) == 5  # 'train' = every image without split files


def test_gta5_cityscapes_pair(tmp_path):
    cs, gta = cityscapes_tree(tmp_path / "cs"), gta5_tree(tmp_path / "gta")
    d = settings(
        compose(
            [
                "data=gta5_cityscapes",
                f"data.root={cs}",
                f"data.source_root={gta}",
                "data.val_holdout=1",
            ]
        )
    ).data
    pool, _, _ = build_splits(d)
    source = build_source(d)
    assert pool.name == "gta5_cityscapes" and len(pool) == 3
    assert source.domain == "source" and len(source) == 3 and source.class_names == pool.class_names


def test_voc_palette_masks_border_and_sbd(tmp_path):
    root = voc_tree(tmp_path / "voc")
    pool, val, test = build_splits(data_cfg("voc", root, "data.val_holdout=1"))
    assert (len(pool), len(val), len(test)) == (2, 1, 2)
    m = test[0]["mask"].numpy()
    assert set(np.unique(m)) == {0, 15, 255, 20}  # palette indices are the class ids
    assert pool.class_names[15] == "person" and pool.num_classes == 21
    aug = build_splits(data_cfg("voc", root, "data.train_split=train_aug", "data.val_holdout=1"))[0]
    assert len(aug) == 3 and set(np.unique(aug[0]["mask"].numpy())) == {0, 12}
    plain = voc_tree(tmp_path / "plain", aug=False)
    with pytest.raises(DataError, match="SegmentationClassAug"):
        build_splits(data_cfg("voc", plain, "data.train_split=train_aug"))


def test_sbd_class_maps_and_boundaries_from_mat(tmp_path):
    root = sbd_tree(tmp_path / "sbd")
    pool, val, test = build_splits(data_cfg("sbd", root, "data.val_holdout=1"))
    assert (len(pool), len(val), len(test)) == (2, 1, 2)
    m = test[1]["mask"].numpy()
    assert m.shape == (30, 44) and set(np.unique(m)) == {0, 7, 15}
    assert m[10, 10] == 15 and m[0, 30] == 7 and m[0, 0] == 0
    b = test.class_boundaries(1)
    assert b.shape == (21, 30, 44) and b.dtype == bool
    assert b[15].sum() == 12 * 12 - 10 * 10 and b[7].sum() == 30 and b[7][:, 24].all()
    assert not b[0].any() and not b[np.r_[1:7, 8:15, 16:21]].any()
    small = build_splits(data_cfg("sbd", root, "data.val_holdout=1", "data.image_size=[16,16]"))
    assert small[2][0]["mask"].shape == (16, 16)
    assert small[2].class_boundaries(0).shape == (21, 16, 16)
    assert (
        build_splits(data_cfg("voc", voc_tree(tmp_path / "voc"), "data.val_holdout=1"))[
            2
        ].class_boundaries(0)
        is None
    )  # label maps only: the F-measure derives boundaries
    (root / "cls" / "2008_000004.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError, match=r"2008_000004.mat: not an SBD class annotation"):
        test.mask(1)


def test_folder_stems_lists_id_map_and_resize(tmp_path):
    root = folder_tree(tmp_path / "f")
    d = data_cfg("folder", root, "data.num_classes=3")
    pool, val, test = build_splits(d)
    assert (len(pool), len(val), len(test)) == (12, 3, 3)
    assert pool[0]["mask"].shape == (40, 56)
    assert set(np.unique(pool[0]["mask"].numpy())) == {0, 1, 2, 255}
    assert pool.class_names == ("0", "1", "2")
    # resize: shorter side (aspect kept) and exact
    short = build_splits(data_cfg("folder", root, "data.num_classes=3", "data.image_size=20"))[0]
    assert short[0]["image"].shape == (3, 20, 28) and short[0]["mask"].shape == (20, 28)
    exact = build_splits(data_cfg("folder", root, "data.num_classes=3", "data.image_size=[16,24]"))
    assert exact[0][0]["mask"].shape == (16, 24)
    # list files and an id map (raw 2 -> ignore, raw 1 -> 0, raw 0 -> 1)
    lines = "\n".join(f"images/val/img{k:03d}.jpg masks/val/img{k:03d}.png" for k in range(2))
    (root / "pairs.txt").write_text("# image mask\n" + lines + "\n")
    cfg = dataclasses.replace(
        d,
        lists=FolderLists(val="pairs.txt"),
        num_classes=2,
        id_map={0: 1, 1: 0, 2: 255},
        class_names=["a", "b"],
    )
    _, val2, _ = build_splits(cfg)
    assert len(val2) == 2 and val2.class_names == ("a", "b")
    raw = val2.raw_mask(0)
    expected = np.select([raw == 0, raw == 1], [1, 0], 255)
    np.testing.assert_array_equal(val2[0]["mask"].numpy(), expected)


def _expect(match: str, fn) -> str:
    with pytest.raises(DataError, match=match) as e:
        fn()
    return str(e.value)


def test_input_errors_name_the_file(tmp_path):
    def splits(root, *extra):
        return build_splits(data_cfg("folder", root, "data.num_classes=3", *extra))

    root = folder_tree(tmp_path / "missing", {"train": 3, "val": 1, "test": 1})
    (root / "masks" / "train" / "img001.png").unlink()
    msg = _expect(r"its mask .*img001\.\* is missing", lambda: splits(root))
    assert "img001.jpg" in msg
    # list file naming a missing mask
    (root / "l.txt").write_text("images/val/img000.jpg masks/val/nothere.png\n")
    assert "nothere.png" in _expect("is missing", lambda: splits(root, "data.lists.train=l.txt"))

    root = folder_tree(tmp_path / "size", {"train": 3, "val": 1, "test": 1})
    save(root / "masks" / "train" / "img002.png", np.zeros((10, 12), np.uint8))
    assert "img002.png" in _expect("differs from image", lambda: splits(root))

    root = folder_tree(tmp_path / "values", {"train": 3, "val": 1, "test": 1})
    save(root / "masks" / "val" / "img000.png", np.full((32, 32), 7, np.uint8))
    _, val, _ = splits(root)
    msg = _expect(r"label values \[7\] are not valid", lambda: val[0])
    assert "img000.png" in msg and "0..2" in msg and "255" in msg

    root = folder_tree(tmp_path / "broken", {"train": 3, "val": 1, "test": 1})
    (root / "images" / "test" / "img000.jpg").write_bytes(b"not an image")
    assert "img000.jpg" in _expect("unreadable image file", lambda: splits(root))

    root = folder_tree(tmp_path / "empty", {"train": 3, "val": 1, "test": 0})
    (root / "images" / "test").mkdir(parents=True, exist_ok=True)
    _expect("split 'test' is empty", lambda: splits(root))
    _expect("data.root is not set", lambda: build_splits(settings(compose(["data=folder"])).data))
    _expect("data.num_classes is not set", lambda: build_splits(data_cfg("folder", root)))
    bad_map = dataclasses.replace(data_cfg("folder", root, "data.num_classes=3"), id_map={5: 9})
    _expect("targets must be", lambda: build_splits(bad_map))

    rgb = folder_tree(tmp_path / "rgb", {"train": 3, "val": 1, "test": 1})
    save(rgb / "masks" / "val" / "img000.png", np.zeros((32, 32, 3), np.uint8))
    _, val, _ = splits(rgb)
    assert "img000.png" in _expect("colour", lambda: val[0])
