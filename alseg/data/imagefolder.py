"""Image classification data sets for domain adaptation in the ImageFolder layout
(Office-Home, DomainNet, VisDA): ``<root>/<domain>/<class>/*.jpg``, optionally with list
files of ``path label`` lines (relative to root) per split.

Like ``SyntheticShapes``, a sample's ``mask`` is its class at every pixel, so
classification runs through the segmentation pipeline with one region per image
(``regions.method=grid``, ``regions.cell`` = the image size). Images are resized to
``image_size`` ([h, w]) so that they batch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from alseg.data.datasets import IMAGE_SUFFIXES, DataError, _open, default_palette
from alseg.schema.data import ImageFolderData


def domain_classes(root: Path, domains: list[str]) -> tuple[str, ...]:
    """Class names: the sorted union of the class folders of the given domains."""
    names: set[str] = set()
    for d in domains:
        folder = root / d
        if not folder.is_dir():
            found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
            raise DataError(f"domain folder {folder} not found; domains under {root}: {found}")
        names |= {p.name for p in folder.iterdir() if p.is_dir()}
    if not names:
        raise DataError(f"no class folders under {root}/{{{','.join(domains)}}}")
    return tuple(sorted(names))


def domain_samples(root: Path, domain: str, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for cls in sorted(p for p in (root / domain).iterdir() if p.is_dir()):
        for f in sorted(cls.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                out.append((f, index[cls.name]))
    if not out:
        raise DataError(f"no images in {root / domain}/<class>/")
    return out


def list_samples(root: Path, list_file: str, num_classes: int) -> list[tuple[Path, int]]:
    path = root / list_file
    if not path.is_file():
        raise DataError(f"list file {path} not found")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{path}, line {n}: expected 'path label', got {line!r}")
        label = int(parts[1])
        if not 0 <= label < num_classes:
            raise DataError(f"{path}, line {n}: label {label} outside 0..{num_classes - 1}")
        out.append((root / parts[0], label))
    return out


class FolderClassification(Dataset):
    """One split of an ImageFolder classification set (sample contract of alseg)."""

    ignore_index = 255

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        class_names: tuple[str, ...],
        image_size: tuple[int, int],
        domain: str,
        name: str,
    ) -> None:
        if not samples:
            raise DataError(f"{name}: the {domain} split is empty")
        for path, _ in samples:
            if not path.is_file():
                raise DataError(f"{path}: file not found")
        self.samples, self.class_names = samples, class_names
        self.num_classes = len(class_names)
        self.palette = default_palette(self.num_classes)
        self.size, self.domain, self.name = image_size, domain, name

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha1("".join(f"{p}:{y};" for p, y in self.samples).encode()).hexdigest()
        return f"{self.name}-{self.domain}-n{len(self)}-{self.size[0]}x{self.size[1]}-{h[:12]}"

    def __len__(self) -> int:
        return len(self.samples)

    def image_uint8(self, index: int) -> np.ndarray:
        im = _open(self.samples[index][0]).convert("RGB")
        im = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
        return np.array(im, dtype=np.uint8)

    def mask(self, index: int) -> torch.Tensor:
        return torch.full(self.size, self.samples[index][1], dtype=torch.long)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image = torch.from_numpy(self.image_uint8(index)).permute(2, 0, 1).float() / 255.0
        return {"image": image, "mask": self.mask(index), "index": index, "domain": self.domain}


def build_imagefolder(d: ImageFolderData) -> tuple[FolderClassification, ...]:
    """(target pool, target val, target test, source) of ``data=imagefolder_da``."""
    if not d.root:
        raise DataError("data.root is not set: the folder holding <domain>/<class>/ images")
    root = Path(str(d.root)).expanduser()
    size = tuple(int(v) for v in d.image_size)
    if len(size) != 2:
        raise DataError(f"data.image_size={list(d.image_size)} must be [height, width]")
    classes = domain_classes(root, [d.source_domain, d.target_domain])
    lists = d.lists
    C = len(classes)

    def take(key: str, domain: str) -> list[tuple[Path, int]]:
        listed = getattr(lists, key)
        if listed:
            return list_samples(root, listed, C)
        return domain_samples(root, domain, classes)

    source = take("source", d.source_domain)
    if lists.train:
        pool, val, test = (take(k, d.target_domain) for k in ("train", "val", "test"))
    else:  # random split of the target domain, fixed by data.seed
        target = take("train", d.target_domain)
        perm = np.random.default_rng(int(d.seed)).permutation(len(target))
        n_test = int(round(float(d.test_fraction) * len(target)))
        n_val = int(d.val_holdout)
        if n_test + n_val >= len(target):
            raise DataError(
                f"data.test_fraction={d.test_fraction} and data.val_holdout={n_val} leave no "
                f"pool of the {len(target)} {d.target_domain} images"
            )
        test = [target[i] for i in sorted(perm[:n_test])]
        val = [target[i] for i in sorted(perm[n_test : n_test + n_val])]
        pool = [target[i] for i in sorted(perm[n_test + n_val :])]
    name = f"{d.name}-{d.source_domain}-{d.target_domain}"
    return (
        FolderClassification(pool, classes, size, "target", name),
        FolderClassification(val, classes, size, "target", name),
        FolderClassification(test, classes, size, "target", name),
        FolderClassification(source, classes, size, "source", name),
    )
