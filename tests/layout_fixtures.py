"""Tiny data set trees in the official layouts, generated for tests (no download).

Masks are drawn from a known class-id map so tests can check the loaders' mapping.
Every tree has a non-square image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Cityscapes label ids used in fixtures and their train ids.
CS_IDS = {7: 0, 8: 1, 26: 13, 33: 18, 0: 255, 23: 10}


def _image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _stripes(h: int, w: int, values: list[int]) -> np.ndarray:
    """Vertical stripes of the given raw values (known answer for mapping tests)."""
    cols = np.arange(w) * len(values) // w
    return np.asarray(values, dtype=np.uint8)[cols][None, :].repeat(h, 0)


def save(path: Path, array: np.ndarray, palette: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(array)
    if palette:
        im = im.convert("P")
        im.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        im.putdata(array.ravel().tolist())
    im.save(path)
    return path


def cityscapes_tree(root: Path) -> Path:
    """train: 2 cities x 2 images (one non-square 24x40), val: 2 images."""
    sizes = {"train": [(32, 64), (24, 40), (32, 64), (32, 64)], "val": [(32, 64), (32, 64)]}
    raw = list(CS_IDS)
    for split, shapes in sizes.items():
        for k, (h, w) in enumerate(shapes):
            city = ["aachen", "bremen"][k % 2]
            stem = f"{city}_{k:06d}_000019"
            save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", _image(h, w, k))
            mask = _stripes(h, w, raw[k % 2 :] + raw[: k % 2])
            save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", mask)
    return root


def gta5_tree(root: Path, split_mat: bool = True) -> Path:
    """5 images 00001..00005 (00005 non-square); split.mat: train 1-3, val 4, test 5."""
    for k in range(1, 6):
        h, w = (24, 40) if k == 5 else (32, 32)
        save(root / "images" / f"{k:05d}.png", _image(h, w, k))
        save(root / "labels" / f"{k:05d}.png", _stripes(h, w, [7, 26, 0]))
    if split_mat:
        from scipy.io import savemat

        savemat(
            str(root / "split.mat"),
            {"trainIds": np.array([[1], [2], [3]]), "valIds": np.array([[4]]), "testIds": [[5]]},
        )
    return root


def voc_tree(root: Path, aug: bool = True) -> Path:
    """train: 3 ids, val: 2 ids; palette masks with 255 borders; SBD train_aug: 4 ids."""
    ids = [f"2007_{k:06d}" for k in range(6)]
    for k, i in enumerate(ids):
        h, w = (30, 44) if k == 1 else (32, 32)
        save(root / "JPEGImages" / f"{i}.jpg", _image(h, w, k))
        mask = _stripes(h, w, [0, 15, 255, 20])
        save(root / "SegmentationClass" / f"{i}.png", mask, palette=True)
        if aug:
            save(root / "SegmentationClassAug" / f"{i}.png", _stripes(h, w, [0, 12]))
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[3:5]) + "\n")
    if aug:
        (sets / "train_aug.txt").write_text("\n".join(ids[:4]) + "\n")
    return root


def sbd_mat(path: Path, seg: np.ndarray, boundaries: dict[int, np.ndarray]) -> Path:
    """An SBD ``cls/*.mat``: struct GTcls with the class map and one sparse boundary map per
    object class 1..20 (``boundaries``: class -> (H, W) bool; the others empty)."""
    from scipy.io import savemat
    from scipy.sparse import csc_matrix

    cells = np.empty((20, 1), dtype=object)
    for k in range(20):
        cells[k, 0] = csc_matrix(boundaries.get(k + 1, np.zeros(seg.shape, bool)).astype(float))
    present = np.array([[c] for c in sorted(set(np.unique(seg).tolist()) - {0})])
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(
        str(path),
        {"GTcls": {"Segmentation": seg, "Boundaries": cells, "CategoriesPresent": present}},
    )
    return path


def sbd_tree(root: Path) -> Path:
    """benchmark_RELEASE/dataset: img/*.jpg, cls/*.mat; train: 3 ids, val: 2 (one 30x44).
    Each class map: background, a class-15 block at rows 8-19 x cols 8-19 and class 7 at
    cols 24-; the boundaries of class 15 are the block's outline, of class 7 its left edge."""
    ids = [f"2008_{k:06d}" for k in range(5)]
    for k, i in enumerate(ids):
        h, w = (30, 44) if k == 4 else (32, 32)
        save(root / "img" / f"{i}.jpg", _image(h, w, k))
        seg = np.zeros((h, w), np.uint8)
        seg[8:20, 8:20] = 15
        seg[:, 24:] = 7
        person = np.zeros((h, w), bool)
        person[8:20, 8:20] = True
        person[9:19, 9:19] = False
        car = np.zeros((h, w), bool)
        car[:, 24] = True
        sbd_mat(root / "cls" / f"{i}.mat", seg, {15: person, 7: car})
    (root / "train.txt").write_text("\n".join(ids[:3]) + "\n")
    (root / "val.txt").write_text("\n".join(ids[3:]) + "\n")
    return root


def folder_tree(root: Path, n: dict[str, int] | None = None, classes: int = 3) -> Path:
    """images/<split>/*.jpg + masks/<split>/*.png, ids 0..classes-1 and 255 in stripes;
    the first train image is non-square (40x56)."""
    n = n or {"train": 12, "val": 3, "test": 3}
    for split, count in n.items():
        for k in range(count):
            h, w = (40, 56) if (split, k) == ("train", 0) else (32, 32)
            save(root / "images" / split / f"img{k:03d}.jpg", _image(h, w, 100 + k))
            values = [*range(classes), 255]
            save(root / "masks" / split / f"img{k:03d}.png", _stripes(h, w, values))
    return root


def photo_folder_tree(root: Path, n: dict[str, int] | None = None) -> Path:
    """A folder data set of real photographs (scikit-image's bundled ones): random 96x128
    crops downscaled to 48x64, labeled with 3 brightness classes (dark / mid / bright) and
    255 near the class thresholds."""
    from skimage import data as photos

    n = n or {"train": 16, "val": 4, "test": 4}
    sources = [photos.astronaut(), photos.chelsea(), photos.coffee(), photos.rocket()]
    rng = np.random.default_rng(0)
    for split, count in n.items():
        for k in range(count):
            src = sources[int(rng.integers(len(sources)))]
            y = int(rng.integers(0, src.shape[0] - 96))
            x = int(rng.integers(0, src.shape[1] - 128))
            crop = Image.fromarray(src[y : y + 96, x : x + 128]).resize((64, 48))
            rgb = np.asarray(crop)
            lum = rgb.astype(np.float32).mean(-1)
            mask = np.digitize(lum, [85, 170]).astype(np.uint8)
            mask[(np.abs(lum - 85) < 4) | (np.abs(lum - 170) < 4)] = 255
            save(root / "images" / split / f"photo{k:03d}.jpg", rgb)
            save(root / "masks" / split / f"photo{k:03d}.png", mask)
    return root


def imagefolder_tree(root: Path, per_class: int = 4) -> Path:
    """<root>/<domain>/<class>/*.jpg: domains Art and Clipart, classes Bike, Cup, Fan (Clipart
    has no Fan images folder content beyond the class folder: classes are the union)."""
    k = 0
    for domain in ("Art", "Clipart"):
        for cls in ("Bike", "Cup", "Fan"):
            for i in range(per_class):
                h, w = (30, 40) if i % 2 else (24, 24)
                save(root / domain / cls / f"{cls.lower()}_{i}.jpg", _image(h, w, k))
                k += 1
    return root


def labelmefacade_tree(root: Path, names: list[str] | None = None) -> Path:
    """images/*.jpg + labels/*.png (RGBA colour codes, random alpha) + train.txt / test.txt.

    Sizes cycle through landscape 24x32, square 32x32 and portrait 32x24 (height x width);
    each label holds 4 vertical stripes of the classes (k, k+1, k+2, k+3) mod 9 for the k-th
    image. ``names`` (default 6 images) are the stems; the first 2 are the authors' train
    split, the rest their test split."""
    from alseg.data.labelmefacade import LABELMEFACADE_COLOURS

    names = names or [f"facade{k:02d}" for k in range(6)]
    colours = np.asarray(LABELMEFACADE_COLOURS, dtype=np.uint8)
    rng = np.random.default_rng(0)
    for k, stem in enumerate(names):
        h, w = [(24, 32), (32, 32), (32, 24)][k % 3]
        save(root / "images" / f"{stem}.jpg", _image(h, w, k))
        ids = _stripes(h, w, [(k + j) % 9 for j in range(4)])
        alpha = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
        save(root / "labels" / f"{stem}.png", np.concatenate([colours[ids], alpha], axis=-1))
    for split, part in (("train", names[:2]), ("test", names[2:])):
        # the authors' files: "images/<name>.jpg" lines, no newline after the last one
        (root / f"{split}.txt").write_text("\n".join(f"images/{n}.jpg" for n in part))
    return root


def labelmefacade_stripes(k: int, h: int, w: int) -> np.ndarray:
    """The class ids of image k of ``labelmefacade_tree`` at its native (h, w)."""
    return _stripes(h, w, [(k + j) % 9 for j in range(4)])
