"""LabelMeFacade (Fröhlich, Rodner and Denzler, ICPR 2010): 945 street photos of building
facades from LabelMe with pixel labels as RGB colour codes, 9 classes.

Layout under ``data.root`` (as its authors publish it; not downloaded by alseg):
  images/<name>.jpg   the photos (mostly 683x512, 512x512 or 512x683, width x height)
  labels/<name>.png   colour-coded labels (RGB or RGBA; alpha ignored)
  train.txt, test.txt the authors' split (100 / 845 lines ``images/<name>.jpg``)

Splits (``data.train_split`` / ``val_split`` / ``test_split``):
  alseg_pool, alseg_val, alseg_test   alseg's fixed re-split of all 945 images (600 / 100 /
                                      245), drawn once by ``draw_resplit`` and committed as
                                      file lists in ``alseg/data/splits/labelmefacade/``, so
                                      that every study reads the same images;
  train, test                         the authors' lists in ``data.root`` (an active-learning
                                      pool of 100 images; conf/data/labelmefacade_authors.yaml).

The data set's terms: non-commercial research only; cite the ICPR 2010 paper.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from alseg.data.datasets import ClassInfo, DataError, read_list

# Class ids in the order of the authors' README; the colour of each class is its code.
LABELMEFACADE_CLASSES = (
    "various", "building", "car", "door", "pavement", "road", "sky", "vegetation", "window",
)  # fmt: skip
LABELMEFACADE_COLOURS = (
    (0, 0, 0), (128, 0, 0), (128, 0, 128), (128, 128, 0), (128, 128, 128), (128, 64, 0),
    (0, 128, 128), (0, 128, 0), (0, 0, 128),
)  # fmt: skip
AUTHORS_SPLITS = ("train", "test")
RESPLIT_DIR = Path(__file__).parent / "splits" / "labelmefacade"
# alseg's re-split: split name -> number of images, in drawing order
RESPLIT_SIZES = {"alseg_pool": 600, "alseg_val": 100, "alseg_test": 245}
RESPLIT_SEED = 0


def labelmefacade_classes() -> ClassInfo:
    """Nine classes, no void: every pixel carries one of the colour codes."""
    return ClassInfo(LABELMEFACADE_CLASSES, LABELMEFACADE_COLOURS, 255, None, colour_coded=True)


def split_file(root: Path, split: str) -> Path:
    """The list file of ``split``: the authors' in ``root``, alseg's in the package."""
    if split in AUTHORS_SPLITS:
        return root / f"{split}.txt"
    if split in RESPLIT_SIZES:
        return RESPLIT_DIR / f"{split}.txt"
    raise DataError(
        f"LabelMeFacade has no split {split!r}; valid: {', '.join(RESPLIT_SIZES)} (alseg's "
        f"re-split of all 945 images), {', '.join(AUTHORS_SPLITS)} (the authors' lists), or "
        "holdout as data.val_split"
    )


def labelmefacade_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(images/<name>.jpg, labels/<name>.png) of every line ``images/<name>.jpg`` of the
    split's list, in list order."""
    rows = read_list(split_file(root, split), root, 1)
    return [(root / "images" / p.name, root / "labels" / f"{p.stem}.png") for (p,) in rows]


def draw_resplit(
    names: Sequence[str], seed: int = RESPLIT_SEED, sizes: dict[str, int] | None = None
) -> dict[str, list[str]]:
    """alseg's re-split: the image names sorted, permuted by ``numpy.random.default_rng(seed)``
    and cut into consecutive parts of ``sizes`` (each part sorted by name).

    Raises:
        DataError: the sizes do not add up to the number of (distinct) names.
    """
    sizes = dict(RESPLIT_SIZES if sizes is None else sizes)
    ordered = sorted(set(names))
    if len(ordered) != len(names) or sum(sizes.values()) != len(ordered):
        raise DataError(
            f"the re-split needs {sum(sizes.values())} distinct images, got {len(ordered)} "
            f"distinct of {len(names)}"
        )
    perm = np.random.default_rng(seed).permutation(len(ordered))
    out, start = {}, 0
    for split, n in sizes.items():
        out[split] = sorted(ordered[i] for i in perm[start : start + n])
        start += n
    return out


def write_resplit(root: Path, out: Path = RESPLIT_DIR) -> dict[str, list[str]]:
    """Draw the re-split of every ``images/*.jpg`` under ``root`` and write one list file per
    split into ``out`` (``scripts/labelmefacade_split.py``)."""
    names = [p.name for p in sorted((root / "images").glob("*.jpg"))]
    splits = draw_resplit(names)
    out.mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        (out / f"{split}.txt").write_text("".join(f"images/{n}\n" for n in members))
    return splits
