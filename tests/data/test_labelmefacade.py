"""The LabelMeFacade layout on tiny trees of the published format (never the real copy):
colour codes to class ids, the size policy, the splits (authors' and alseg's committed
re-split) and errors that name the file, the pixel and the colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from layout_fixtures import _stripes, labelmefacade_stripes, labelmefacade_tree, save

from alseg.cli import main
from alseg.config import compose
from alseg.data.datasets import DataError
from alseg.data.labelmefacade import (
    LABELMEFACADE_CLASSES,
    LABELMEFACADE_COLOURS,
    RESPLIT_DIR,
    RESPLIT_SIZES,
    draw_resplit,
)
from alseg.data.layouts import build_splits

NATIVE = [(24, 32), (32, 32), (32, 24)]  # the tree's sizes, cycling (height, width)


def authors(root: Path, *extra: str):
    """Pool = the authors' train list, val = test = their test list, native sizes."""
    cfg = compose(
        [
            "data=labelmefacade",
            f"data.root={root}",
            "data.train_split=train",
            "data.val_split=test",
            "data.test_split=test",
            "data.image_size=null",
            *extra,
        ]
    )
    return build_splits(cfg.data)


def test_colour_codes_become_class_ids_alpha_ignored(tmp_path):
    root = labelmefacade_tree(tmp_path / "lmf")
    pool, _, test = authors(root)
    assert pool.class_names == LABELMEFACADE_CLASSES and pool.num_classes == 9
    assert [p.name for p, _ in pool.pairs] == ["facade00.jpg", "facade01.jpg"]
    assert len(test) == 4
    for ds, first in ((pool, 0), (test, 2)):
        for i in range(len(ds)):
            k = first + i
            item = ds[i]
            expected = labelmefacade_stripes(k, *NATIVE[k % 3])
            np.testing.assert_array_equal(item["mask"].numpy(), expected)
            assert item["image"].shape[-2:] == item["mask"].shape


def test_crop_policy_keeps_the_aspect_and_the_centre(tmp_path):
    """A 32x64 (h x w) label of 4 stripes fitted to 16x16: resized to 16x32, the centre 16
    columns cut out, which hold stripes 2 and 3 only, 8 columns each."""
    root = labelmefacade_tree(tmp_path / "lmf")
    colours = np.asarray(LABELMEFACADE_COLOURS, dtype=np.uint8)
    save(root / "images" / "facade00.jpg", np.zeros((32, 64, 3), np.uint8))
    save(root / "labels" / "facade00.png", colours[_stripes(32, 64, [1, 2, 3, 4])])
    pool, _, test = authors(root, "data.image_size=[16,16]", "data.resize=crop")
    mask = pool[0]["mask"].numpy()
    expected = np.repeat(np.array([[2] * 8 + [3] * 8]), 16, axis=0)
    np.testing.assert_array_equal(mask, expected)
    assert pool.image_sizes == [(16, 16), (16, 16)]
    # image 5, portrait 32x24 -> 21x16 (rounded), rows 2..17: every stripe, 4 columns each
    portrait = test[3]["mask"].numpy()
    np.testing.assert_array_equal(portrait, _stripes(16, 16, [5, 6, 7, 8]))
    # stretch squeezes instead: the same label keeps all 4 stripes in 16 columns
    pool, _, _ = authors(root, "data.image_size=[16,16]", "data.resize=stretch")
    np.testing.assert_array_equal(pool[0]["mask"].numpy()[0], np.repeat([1, 2, 3, 4], 4))


def test_cache_returns_the_same_samples_and_protects_them(tmp_path):
    root = labelmefacade_tree(tmp_path / "lmf")
    plain, _, _ = authors(root, "data.image_size=[16,16]")
    cached, _, _ = authors(root, "data.image_size=[16,16]", "data.cache=true")
    for i in range(len(plain)):
        a, b = plain[i], cached[i]
        assert (a["image"] == b["image"]).all() and (a["mask"] == b["mask"]).all()
        b["mask"][:] = 0  # a caller's change does not reach the cache
        assert (cached[i]["mask"] == a["mask"]).all()


def test_bad_colour_names_the_file_the_pixel_and_the_colour(tmp_path):
    root = labelmefacade_tree(tmp_path / "lmf")
    colours = np.asarray(LABELMEFACADE_COLOURS, dtype=np.uint8)
    rgb = colours[labelmefacade_stripes(1, 32, 32)]
    rgb[5, 7] = (12, 34, 56)
    rgb[9, 2] = (12, 34, 56)
    save(root / "labels" / "facade01.png", rgb)
    pool, _, _ = authors(root)
    with pytest.raises(DataError) as e:
        pool.mask(1)
    msg = str(e.value)
    assert "facade01.png" in msg and "pixel (x=7, y=5)" in msg and "12:34:56" in msg
    assert "2 such pixels" in msg and "building 128:0:0" in msg
    assert main(["data", "check", "data=labelmefacade_authors", f"data.root={root}"]) == 2


def test_missing_label_and_size_mismatch_name_the_file(tmp_path):
    root = labelmefacade_tree(tmp_path / "lmf")
    (root / "labels" / "facade03.png").unlink()
    with pytest.raises(DataError, match=r"facade03\.jpg: its mask .*facade03\.png is missing"):
        authors(root)
    labelmefacade_tree(root)
    save(root / "labels" / "facade04.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"facade04\.png: mask size 20x20 differs from image"):
        authors(root)
    labelmefacade_tree(root)
    (root / "test.txt").write_text("images/facade02.jpg\nimages/nothere.jpg\n")
    with pytest.raises(DataError, match=r"nothere\.jpg"):
        authors(root)
    with pytest.raises(DataError, match="no split 'tran'.*alseg_pool"):
        authors(root, "data.train_split=tran")


def test_authors_split_config_holds_out_val_from_train(tmp_path, capsys):
    names = [f"facade{k:02d}" for k in range(8)]
    root = labelmefacade_tree(tmp_path / "lmf", names)
    (root / "train.txt").write_text("\n".join(f"images/{n}.jpg" for n in names[:5]))
    cfg = compose(["data=labelmefacade_authors", f"data.root={root}", "data.val_holdout=2"])
    pool, val, test = build_splits(cfg.data)
    assert (len(pool), len(val), len(test)) == (3, 2, 6)
    assert {p.stem for p, _ in pool.pairs + val.pairs} == set(names[:5])
    assert pool[0]["image"].shape[-2:] == (96, 128)  # the config's size policy
    args = ["data", "check", "data=labelmefacade_authors", f"data.root={root}"]
    assert main([*args, "data.val_holdout=2"]) == 0
    out = capsys.readouterr().out
    assert "train: 3 images, sizes (HxW) 96x128, 0 problem(s)" in out


def test_committed_resplit_is_the_documented_draw():
    lists = {s: (RESPLIT_DIR / f"{s}.txt").read_text().splitlines() for s in RESPLIT_SIZES}
    assert {s: len(v) for s, v in lists.items()} == RESPLIT_SIZES
    names = [line.removeprefix("images/") for v in lists.values() for line in v]
    assert len(set(names)) == 945 == len(names)  # disjoint, every image once
    assert all(n.endswith(".jpg") for n in names)
    # drawing again from the same names gives the committed lists
    drawn = draw_resplit(names)
    assert drawn == {s: [line.removeprefix("images/") for line in v] for s, v in lists.items()}
    assert draw_resplit(names, seed=1) != drawn
    with pytest.raises(DataError, match="945 distinct images"):
        draw_resplit(names[:-1])


def test_default_config_reads_the_resplit_of_a_full_tree(tmp_path, capsys):
    """data=labelmefacade as shipped: the committed lists on a tree of the 945 names."""
    names = [
        line.removeprefix("images/").removesuffix(".jpg")
        for s in RESPLIT_SIZES
        for line in (RESPLIT_DIR / f"{s}.txt").read_text().splitlines()
    ]
    root = labelmefacade_tree(tmp_path / "lmf", sorted(names))
    cfg = compose(["data=labelmefacade", f"data.root={root}"])
    pool, val, test = build_splits(cfg.data)
    assert (len(pool), len(val), len(test)) == (600, 100, 245)
    assert pool.image_sizes is not None and set(pool.image_sizes) == {(96, 128)}
    assert main(["data", "check", "data=labelmefacade", f"data.root={root}"]) == 0
    out = capsys.readouterr().out
    assert "train: 600 images, sizes (HxW) 96x128, 0 problem(s)" in out
    assert "test: 245 images" in out
