"""Data sets with a class label and a bias attribute per image.

Every data set here follows one contract: ``labels`` and ``biases`` (int arrays, one
entry per image), ``class_names`` and ``bias_names``, ``image_uint8(i)`` (H x W x 3) and
``__getitem__`` -> ``{"image": float (3, S, S) in [0, 1], "label", "bias", "index"}``.
A *group* is a (class, bias) cell; a sample is *bias-aligned* when its bias value is the
one that most training samples of its class carry (``aligned_bias``), else
*bias-conflicting*. The bias attribute is never used by the re-weighting methods (only by
GroupDRO, the upper bound, and by the evaluation).

Embedded (procedural, deterministic, no download):

- ``ColoredShapes``: class = shape (six), bias = colour (six; class k's colour is
  palette[k] in all but ``conflict_ratio`` of the training images). Val and test are
  unbiased: every (shape, colour) group equally often.
- ``WaterbirdShapes``: class = object (a "landbird" triangle or a "waterbird" cross in a
  random neutral colour), bias = background (land texture or water stripes); the
  background matches the class in 1 - ``conflict_ratio`` of the training images (0.95 by
  default, as Waterbirds' confounder), 50/50 in val and test.

Real layouts: ``CelebAGroups`` (the official attribute and partition files),
``WaterbirdsGroups`` (``metadata.csv``) and ``GroupFolder`` (an ImageFolder plus a CSV of
bias values and splits).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from alseg.data.datasets import DataError
from alseg.data.shapes import SHAPE_CLASSES, SHAPE_PALETTE, shape_mask

SPLITS = ("train", "val", "test")
SPLIT_IDS = {s: i for i, s in enumerate(SPLITS)}  # as the split columns of the official files


class GroupDataset(Dataset):
    """Base of the data sets with a bias attribute (see the module docstring)."""

    labels: np.ndarray
    biases: np.ndarray
    class_names: tuple[str, ...]
    bias_names: tuple[str, ...]
    split: str

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_biases(self) -> int:
        return len(self.bias_names)

    @property
    def groups(self) -> np.ndarray:
        """(N,) group id of each sample: label * num_biases + bias."""
        return self.labels * self.num_biases + self.biases

    def group_counts(self) -> np.ndarray:
        """(C, B) samples per (class, bias) group."""
        counts = np.bincount(self.groups, minlength=self.num_classes * self.num_biases)
        return counts.reshape(self.num_classes, self.num_biases)

    @property
    def fingerprint(self) -> str:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.labels)

    def image_uint8(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def image(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.image_uint8(index)).permute(2, 0, 1).float() / 255.0

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {
            "image": self.image(index),
            "label": int(self.labels[index]),
            "bias": int(self.biases[index]),
            "index": index,
        }


def aligned_bias(counts: np.ndarray) -> np.ndarray:
    """(C,) the bias value each class is aligned with: the one most over-represented in
    the class relative to its share of all training samples, argmax_b n(c, b) / n(b)
    (``counts``: the (C, B) training group counts). For balanced biases this is the most
    frequent value in the class; for CelebA (Blond_Hair, Male) it pairs blond with female
    and not-blond with male, as the LWBC code's aligned groups."""
    per_bias = counts.sum(axis=0, keepdims=True).astype(np.float64)
    return (counts / np.maximum(per_bias, 1)).argmax(axis=1)


def check_groups(ds: GroupDataset, what: str) -> None:
    """Every (class, bias) group of an evaluation split must hold a sample: the
    worst-group accuracy is undefined otherwise."""
    counts = ds.group_counts()
    empty = np.argwhere(counts == 0)
    if len(empty):
        c, b = empty[0]
        raise DataError(
            f"{what}: group (class {ds.class_names[c]!r}, bias {ds.bias_names[b]!r}) has no "
            f"sample ({len(empty)} empty group(s) of {counts.size}); every group of the val "
            "and test splits needs one (per-group and worst-group accuracy)"
        )


def _counted_choice(labels: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool with exactly round(ratio * n) True entries at random places, spread over
    the classes as evenly as possible (per-class counts differ by at most one)."""
    n = len(labels)
    rank = np.empty(n, dtype=np.int64)  # a random rank of each sample within its class
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rank[idx] = rng.permutation(len(idx))
    order = np.lexsort((labels, rank))  # rank 0 of every class, then rank 1, ...
    out = np.zeros(n, dtype=bool)
    out[order[: int(round(ratio * n))]] = True
    return out


def _balanced_groups(
    n: int, num_classes: int, num_biases: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and biases with every (class, bias) group equally often (up to one)."""
    g = rng.permutation(np.arange(n) % (num_classes * num_biases))
    return g // num_biases, g % num_biases


def _biased_groups(
    n: int, num_classes: int, num_biases: int, ratio: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced labels; bias = label's own value except in round(ratio * n) samples, which
    get one of the other values uniformly."""
    labels = rng.permutation(np.arange(n) % num_classes)
    conflict = _counted_choice(labels, ratio, rng)
    shift = rng.integers(1, num_biases, size=n)  # another value than the aligned one
    biases = np.where(conflict, (labels + shift) % num_biases, labels % num_biases)
    return labels, biases


class _Procedural(GroupDataset):
    """Images drawn on the fly from (seed, split, index); labels and biases up front."""

    def __init__(
        self,
        split: str,
        num_images: int,
        image_size: int,
        seed: int,
        conflict_ratio: float,
        num_biases: int,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not valid; choose one of: {', '.join(SPLITS)}")
        if not 0.0 <= conflict_ratio <= 1.0:
            raise ValueError(f"conflict_ratio={conflict_ratio} must be in [0, 1]")
        self.split, self.image_size, self.seed = split, image_size, seed
        self.conflict_ratio = conflict_ratio
        rng = np.random.default_rng([seed, SPLIT_IDS[split], 11])
        C = len(self.class_names)
        if split == "train":
            self.labels, self.biases = _biased_groups(
                num_images, C, num_biases, conflict_ratio, rng
            )
        else:
            self.labels, self.biases = _balanced_groups(num_images, C, num_biases, rng)
        self._cache: dict[int, np.ndarray] = {}

    @property
    def fingerprint(self) -> str:
        """Names the images: the generator version, the settings, and a hash of the labels
        and biases (so a change of how groups are assigned never reuses stale features)."""
        h = hashlib.sha1(self.labels.astype(np.int64).tobytes())
        h.update(self.biases.astype(np.int64).tobytes())
        return (
            f"{type(self).__name__}-v2-{self.split}-s{self.seed}-n{len(self)}-"
            f"{self.image_size}px-conflict{self.conflict_ratio:g}-{h.hexdigest()[:12]}"
        )

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_IDS[self.split], index, 5])

    def image_uint8(self, index: int) -> np.ndarray:
        if index not in self._cache:
            img = self._render(int(self.labels[index]), int(self.biases[index]), self._rng(index))
            self._cache[index] = (
                (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            )
        return self._cache[index]

    def _render(self, label: int, bias: int, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError


class ColoredShapes(_Procedural):
    """Class = shape, bias = colour (a Colored-MNIST-style set from alseg's shapes).

    Args:
        split: "train" (biased) | "val" | "test" (unbiased).
        num_images: samples.
        image_size: side in pixels.
        seed: data set seed.
        conflict_ratio: share of bias-conflicting training images (0.05, 0.02, 0.01,
            0.005 in the Colored-MNIST protocol).
    """

    class_names = SHAPE_CLASSES
    bias_names = ("red", "green", "yellow", "blue", "orange", "purple")

    def __init__(
        self,
        split: str = "train",
        num_images: int = 3000,
        image_size: int = 32,
        seed: int = 0,
        conflict_ratio: float = 0.05,
    ) -> None:
        super().__init__(split, num_images, image_size, seed, conflict_ratio, len(SHAPE_PALETTE))

    def _render(self, label: int, bias: int, rng: np.random.Generator) -> torch.Tensor:
        S = self.image_size
        base = torch.tensor(rng.uniform(0.35, 0.6), dtype=torch.float32)
        noise = torch.from_numpy(rng.normal(0, 0.04, (3, S, S)).astype(np.float32))
        img = base + noise
        colour = np.clip(np.array(SHAPE_PALETTE[bias]) / 255.0 + rng.normal(0, 0.05, 3), 0, 1)
        img[:, shape_mask(label, S, rng)] = torch.tensor(colour, dtype=torch.float32)[:, None]
        return img


_NEUTRAL = ((0.95, 0.95, 0.95), (0.1, 0.1, 0.1), (0.55, 0.35, 0.2), (0.6, 0.6, 0.6))
_BIRD_SHAPES = (2, 4)  # triangle ("landbird"), cross ("waterbird") of alseg.data.shapes


class WaterbirdShapes(_Procedural):
    """Class = object, bias = background (a Waterbirds-style set).

    Args:
        split: "train" (biased) | "val" | "test" (50/50 backgrounds).
        num_images: samples.
        image_size: side in pixels.
        seed: data set seed.
        conflict_ratio: share of training images whose background does not match the
            class (1 - the confounder strength; Waterbirds: 0.05).
    """

    class_names = ("landbird", "waterbird")
    bias_names = ("land", "water")

    def __init__(
        self,
        split: str = "train",
        num_images: int = 2000,
        image_size: int = 32,
        seed: int = 0,
        conflict_ratio: float = 0.05,
    ) -> None:
        super().__init__(split, num_images, image_size, seed, conflict_ratio, 2)

    def _render(self, label: int, bias: int, rng: np.random.Generator) -> torch.Tensor:
        S = self.image_size
        if bias == 0:  # land: green-brown blotches
            base = torch.tensor(
                rng.uniform([0.25, 0.4, 0.1], [0.45, 0.6, 0.25]), dtype=torch.float32
            )
            coarse = torch.from_numpy(rng.random((1, 3, S // 4, S // 4)).astype(np.float32))
            tex = F.interpolate(coarse, size=(S, S), mode="bilinear")[0] - 0.5
            img = base[:, None, None] + 0.35 * tex
        else:  # water: blue with horizontal waves
            base = torch.tensor(
                rng.uniform([0.1, 0.3, 0.55], [0.2, 0.45, 0.8]), dtype=torch.float32
            )
            y = torch.arange(S, dtype=torch.float32)[:, None].expand(S, S)
            wave = torch.sin(y * rng.uniform(0.8, 1.4) + rng.uniform(0, 6.3)) * 0.12
            img = base[:, None, None] + wave[None]
        img = img + torch.from_numpy(rng.normal(0, 0.03, (3, S, S)).astype(np.float32))
        colour = np.array(_NEUTRAL[int(rng.integers(len(_NEUTRAL)))])
        m = shape_mask(_BIRD_SHAPES[label], S, rng)
        img[:, m] = torch.tensor(colour, dtype=torch.float32)[:, None]
        return img
