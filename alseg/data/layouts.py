"""The official layouts of the field's data sets, and plain image/mask folders.

Each layout lists the (image, mask) pairs of a split and says how raw mask values map
to class ids. ``build_splits(cfg.data)`` returns the pool, val and test data sets of a
``conf/data/*.yaml`` config; ``build_source(cfg.data)`` the source domain of a domain-
adaptation pair (``gta5_cityscapes``).

Layouts (``data.root`` points at the folder shown):
  cityscapes  leftImg8bit/<split>/<city>/*_leftImg8bit.png,
              gtFine/<split>/<city>/*_gtFine_labelIds.png
  gta5        images/*.png, labels/*.png (Cityscapes label ids); split.mat or <split>.txt lists
  voc         JPEGImages/*.jpg, SegmentationClass/*.png, ImageSets/Segmentation/<split>.txt;
              split train_aug (SBD): SegmentationClassAug/*.png +
              ImageSets/Segmentation/train_aug.txt
  sbd         img/*.jpg, cls/*.mat (GTcls: Segmentation, and Boundaries per class, used by
              the semantic-boundary F-measure), <split>.txt (train, val): the
              benchmark_RELEASE/dataset folder of the Semantic Boundaries Dataset
  folder      images/<split>/* + masks/<split>/* (same stem), or a list file of "image mask"
              lines per split (data.lists.<split>)
  labelmefacade  images/*.jpg, labels/*.png (RGB colour codes), train.txt / test.txt (the
              authors' split) or alseg's committed re-split (alseg.data.labelmefacade)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, cast

import numpy as np

from alseg.data.cityscapes_labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, label_id_lut
from alseg.data.datasets import (
    ClassInfo,
    DataError,
    FileSegmentationDataset,
    default_palette,
    find_images,
    read_list,
)
from alseg.data.labelmefacade import labelmefacade_classes, labelmefacade_pairs
from alseg.schema.data import FileData, FolderData, PairData

Pairs = list[tuple[Path, Path]]

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
HOLDOUT = "holdout"
Fit = Literal["stretch", "crop"]  # data.resize (the schema checks the choice)


def _root(d: FileData) -> Path:
    if not d.root:
        raise DataError(f"data.root is not set: point it at the {d.name} folder (see conf/data/)")
    root = Path(str(d.root)).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root={root} is not a folder")
    return root


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{path} not found: the {what} folder of the layout")
    return path


# --- Cityscapes ------------------------------------------------------------------------
def cityscapes_pairs(root: Path, split: str) -> Pairs:
    images = _require_dir(root / "leftImg8bit" / split, f"Cityscapes '{split}' images")
    pairs = []
    for image in sorted(images.glob("*/*_leftImg8bit.png")):
        stem = image.name[: -len("_leftImg8bit.png")]
        mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
        pairs.append((image, mask))
    return pairs


def cityscapes_classes() -> ClassInfo:
    return ClassInfo(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, 255, label_id_lut())


# --- GTA5 --------------------------------------------------------------------------------
def gta5_pairs(root: Path, split: str) -> Pairs:
    """Official split from ``split.mat`` (trainIds/valIds/testIds, 1-based image numbers)
    or ``<split>.txt`` (file names); without either, ``train`` is every image."""
    images, labels = _require_dir(root / "images", "GTA5 images"), root / "labels"
    listed = root / f"{split}.txt"
    if listed.is_file():
        names = [r[0].name for r in read_list(listed, root, 1)]
    elif (root / "split.mat").is_file():
        from scipy.io import loadmat

        key = f"{split}Ids"
        mat = loadmat(str(root / "split.mat"))
        if key not in mat:
            raise DataError(
                f"{root / 'split.mat'} has no {key!r}; valid: trainIds, valIds, testIds"
            )
        names = [f"{int(i):05d}.png" for i in np.asarray(mat[key]).ravel()]
    elif split == "train":
        names = [p.name for p in find_images(images)]
    else:
        raise DataError(
            f"GTA5 split {split!r} needs {root / 'split.mat'} or {listed}; without them only "
            "'train' (every image) exists (or use data.val_split=holdout)"
        )
    return [(images / n, labels / n) for n in names]


# --- PASCAL VOC ----------------------------------------------------------------------------
def voc_pairs(root: Path, split: str) -> Pairs:
    aug = split == "train_aug"
    masks = root / ("SegmentationClassAug" if aug else "SegmentationClass")
    _require_dir(masks, "SBD augmented masks (SegmentationClassAug)" if aug else "VOC masks")
    ids = read_list(root / "ImageSets" / "Segmentation" / f"{split}.txt", root, 1)
    return [(root / "JPEGImages" / f"{r[0].name}.jpg", masks / f"{r[0].name}.png") for r in ids]


def voc_classes() -> ClassInfo:
    lut = np.full(256, -1, dtype=np.int64)
    lut[: len(VOC_CLASSES)] = np.arange(len(VOC_CLASSES))
    lut[255] = 255  # object borders
    return ClassInfo(VOC_CLASSES, default_palette(len(VOC_CLASSES)), 255, lut)


# --- SBD (Semantic Boundaries Dataset) -------------------------------------------------------
def sbd_pairs(root: Path, split: str) -> Pairs:
    _require_dir(root / "cls", "SBD class annotations (cls/*.mat)")
    ids = read_list(root / f"{split}.txt", root, 1)
    return [(root / "img" / f"{r[0].name}.jpg", root / "cls" / f"{r[0].name}.mat") for r in ids]


# --- image/mask folders --------------------------------------------------------------------
def folder_pairs(root: Path, split: str, list_file: str | None = None) -> Pairs:
    if list_file:
        return [(a, b) for a, b in read_list(root / list_file, root, 2)]
    images = _require_dir(root / "images" / split, f"'{split}' images")
    masks = root / "masks" / split
    by_stem = {p.stem: p for p in find_images(masks)}
    pairs = []
    for image in find_images(images):
        # a missing mask is named when the split opens ("its mask <stem>.* is missing")
        pairs.append((image, by_stem.get(image.stem, masks / f"{image.stem}.*")))
    return pairs


def folder_classes(d: FileData) -> ClassInfo:
    assert isinstance(d, FolderData)  # the "folder" layout's classes come from its config
    if d.num_classes is None:
        raise DataError(
            "data.num_classes is not set (the number of classes of the folder data set)"
        )
    C, ignore = int(d.num_classes), int(d.ignore_index)
    if C < 2:
        raise DataError(f"data.num_classes={C} must be >= 2")
    names = tuple(d.class_names) if d.class_names else tuple(str(c) for c in range(C))
    if len(names) != C:
        raise DataError(f"data.class_names has {len(names)} names for {C} classes")
    lut = None
    if d.id_map:
        pairs = {int(k): int(v) for k, v in d.id_map.items()}
        bad = {k: v for k, v in pairs.items() if not (0 <= v < C or v == ignore) or k < 0}
        if bad:
            raise DataError(f"data.id_map {bad}: targets must be 0..{C - 1} or {ignore}")
        lut = np.full(max(max(pairs), 255) + 1, -1, dtype=np.int64)
        for k, v in pairs.items():
            lut[k] = v
        lut[ignore] = ignore if lut[ignore] == -1 else lut[ignore]
    return ClassInfo(names, default_palette(C), ignore, lut)


# --- registry ------------------------------------------------------------------------------
LAYOUTS: dict[str, tuple[Callable[[Path, str], Pairs], Callable[[FileData], ClassInfo]]] = {
    "cityscapes": (cityscapes_pairs, lambda d: cityscapes_classes()),
    "gta5": (gta5_pairs, lambda d: cityscapes_classes()),
    "voc": (voc_pairs, lambda d: voc_classes()),
    "sbd": (sbd_pairs, lambda d: voc_classes()),
    "folder": (lambda root, split: folder_pairs(root, split), folder_classes),
    "labelmefacade": (labelmefacade_pairs, lambda d: labelmefacade_classes()),
}
# Domain-adaptation pairs: the pool/val/test come from the target layout.
PAIRS = {"gta5_cityscapes": ("gta5", "cityscapes")}


def _pairs(d: FileData, layout: str, root: Path, split: str) -> Pairs:
    if isinstance(d, FolderData):  # list files of the folder layout, by split
        return folder_pairs(root, split, getattr(d.lists, split, None))
    return LAYOUTS[layout][0](root, split)


def split_pairs(d: FileData, layout: str, root: Path) -> dict[str, Pairs]:
    """Pairs of the pool ('train'), 'val' and 'test', with the val hold-out taken out of the
    train split (``data.val_split=holdout``: ``data.val_holdout`` random images, fixed by
    ``data.seed``) and ``data.max_images`` applied."""
    train = _pairs(d, layout, root, d.train_split)
    out: dict[str, Pairs] = {}
    if d.val_split == HOLDOUT:
        k = int(d.val_holdout)
        if not 0 < k < len(train):
            raise DataError(
                f"data.val_holdout={k} must be between 1 and {len(train) - 1} "
                f"(the train split has {len(train)} images)"
            )
        perm = np.random.default_rng(int(d.seed)).permutation(len(train))
        held = set(perm[:k].tolist())
        out["val"] = [p for i, p in enumerate(train) if i in held]
        train = [p for i, p in enumerate(train) if i not in held]
    else:
        out["val"] = _pairs(d, layout, root, d.val_split)
    out["train"] = train
    out["test"] = _pairs(d, layout, root, d.test_split)
    if d.max_images:
        out = {k: v[: d.max_images] for k, v in out.items()}
    return out


def build_splits(
    d: FileData, strict: bool = True
) -> tuple[FileSegmentationDataset, FileSegmentationDataset, FileSegmentationDataset]:
    """(pool, val, test) data sets of a real-data config ``d`` (= ``cfg.data``); not
    ``strict``: file problems are collected in each split's ``problems`` (data check)."""
    layout = PAIRS[d.name][1] if d.name in PAIRS else d.name
    if layout not in LAYOUTS:
        raise DataError(f"data.name={d.name!r} is not a file layout; valid: {list(LAYOUTS)}")
    root = _root(d)
    classes = LAYOUTS[layout][1](d)
    names = {"train": d.train_split, "val": d.val_split, "test": d.test_split}
    sets = {
        key: FileSegmentationDataset(
            pairs,
            classes,
            d.name,
            names[key],
            d.image_size,
            str(d.domain),
            fit=cast(Fit, d.resize),
            cache=d.cache,
            strict=strict,
        )
        for key, pairs in split_pairs(d, layout, root).items()
    }
    return sets["train"], sets["val"], sets["test"]


def build_source(d: FileData) -> FileSegmentationDataset:
    """The labeled source domain of a domain-adaptation pair (e.g. GTA5 of gta5_cityscapes)."""
    if d.name not in PAIRS or not isinstance(d, PairData):
        raise DataError(f"data.name={d.name!r} has no source domain; valid: {list(PAIRS)}")
    layout = PAIRS[d.name][0]
    if not d.source_root:
        raise DataError(f"data.source_root is not set: point it at the {layout} folder")
    root = Path(str(d.source_root)).expanduser()
    pairs = LAYOUTS[layout][0](root, str(d.source_split))
    return FileSegmentationDataset(
        pairs,
        LAYOUTS[layout][1](d),
        layout,
        str(d.source_split),
        d.image_size,
        "source",
        fit=cast(Fit, d.resize),
    )
