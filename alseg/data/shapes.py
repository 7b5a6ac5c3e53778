"""Synthetic two-domain image classification (CPU tests of active domain adaptation).

Six shape classes (disk, square, triangle, ring, cross, bar) drawn at random positions,
sizes and colours on a background. The ``source`` domain is clean (light plain
background, saturated colours); the ``target`` domain is dark, textured, noisy and
blurred, with another palette. ``imbalance`` sets a label-distribution shift in the
style of Office-Home RS-UT: source class frequencies fall as r^k, target ones as
r^(C-1-k) (reversed), with r = 1 - imbalance. ``gap`` in [0, 1] scales the appearance
shift of the target domain: 1 is the dark, noisy, blurred look above, 0 renders target
images like source ones (the label shift stays), values between blend background,
palette, blur and noise linearly.

Classification is segmentation with one region per image and an image-level label: the
``mask`` of a sample is its class at every pixel, so the same oracle, LabelStore, loop
and strategies apply (``regions.method=grid regions.cell=<image size>``), and pixel
accuracy is image accuracy.

``segmentation=True`` makes it a segmentation set with a background class, as VOC: class
0 is the background, class k + 1 the shape k, and the mask is the shape's silhouette
(the images are the same). Two classes per image: the data set where image tags say the
most (``experiment=image_labels_shapes``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

SHAPE_CLASSES = ("disk", "square", "triangle", "ring", "cross", "bar")
SHAPE_PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
)
_SPLITS = {"train": 0, "val": 1, "test": 2}
_DOMAINS = {"source": 0, "target": 1}


def class_frequencies(num_classes: int, domain: str, imbalance: float) -> np.ndarray:
    """(C,) class probabilities of a domain (RS-UT style shift when imbalance > 0)."""
    r = 1.0 - imbalance
    k = np.arange(num_classes) if domain == "source" else np.arange(num_classes)[::-1]
    p = r ** k.astype(np.float64)
    return p / p.sum()


def shape_mask(cls: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """(size, size) bool silhouette of a shape of class ``cls`` at a random place/scale."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = size * rng.uniform(0.18, 0.32)
    cy, cx = (size * rng.uniform(0.35, 0.65) for _ in range(2))
    dy, dx = (yy - cy).float(), (xx - cx).float()
    if cls == 0:  # disk
        return dx**2 + dy**2 < r**2
    if cls == 1:  # square
        return (dx.abs() < r * 0.85) & (dy.abs() < r * 0.85)
    if cls == 2:  # triangle (apex up)
        return (dy < r * 0.8) & (dy > -r) & (dx.abs() < (dy + r) * 0.6)
    if cls == 3:  # ring
        d2 = dx**2 + dy**2
        return (d2 < r**2) & (d2 > (0.55 * r) ** 2)
    if cls == 4:  # cross
        w = r * 0.3
        return ((dx.abs() < w) & (dy.abs() < r)) | ((dy.abs() < w) & (dx.abs() < r))
    return (dy.abs() < r * 0.25) & (dx.abs() < r * 1.1)  # bar


class SyntheticShapes(Dataset):
    """Args:
    split: "train" | "val" | "test".
    num_images: samples.
    image_size: side in pixels.
    domain: "source" | "target".
    seed: data set seed.
    imbalance: label-distribution shift in [0, 1) (0 = uniform classes in both domains).
    gap: appearance shift of the target domain in [0, 1] (1 = full, 0 = none).
    segmentation: masks are silhouettes with a background class 0 (shape k -> class k + 1).
    """

    class_names: tuple[str, ...] = SHAPE_CLASSES
    num_classes = len(SHAPE_CLASSES)
    palette: tuple[tuple[int, int, int], ...] = SHAPE_PALETTE
    ignore_index = 255

    def __init__(
        self,
        split: str = "train",
        num_images: int = 300,
        image_size: int = 32,
        domain: str = "source",
        seed: int = 0,
        imbalance: float = 0.0,
        gap: float = 1.0,
        segmentation: bool = False,
    ) -> None:
        if split not in _SPLITS or domain not in _DOMAINS:
            raise ValueError(
                f"split={split!r} / domain={domain!r}: valid {list(_SPLITS)} / {list(_DOMAINS)}"
            )
        if not 0.0 <= imbalance < 1.0:
            raise ValueError(f"imbalance={imbalance} must be in [0, 1)")
        if not 0.0 <= gap <= 1.0:
            raise ValueError(f"gap={gap} must be in [0, 1] (1 = full target look, 0 = source look)")
        self.gap = gap
        self.split, self.domain, self.seed, self.imbalance = split, domain, seed, imbalance
        self.image_size = image_size
        rng = np.random.default_rng([seed, _SPLITS[split], _DOMAINS[domain], 7])
        p = class_frequencies(self.num_classes, domain, imbalance)
        self.labels = rng.choice(self.num_classes, size=num_images, p=p)
        rendered = [self._render(int(c), i) for i, c in enumerate(self.labels)]
        self.images = torch.stack([im for im, _ in rendered])  # (N, 3, S, S) uint8
        self.segmentation = segmentation
        self.silhouettes = torch.stack([m for _, m in rendered]) if segmentation else None
        if segmentation:  # instance attributes shadow the classification ones
            self.class_names = ("background", *SHAPE_CLASSES)
            self.num_classes = len(self.class_names)
            self.palette = ((0, 0, 0), *SHAPE_PALETTE)

    def _render(self, cls: int, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, S, S) uint8 image and (S, S) bool silhouette of sample ``index``."""
        S = self.image_size
        rng = np.random.default_rng([self.seed, _SPLITS[self.split], _DOMAINS[self.domain], index])
        target = self.domain == "target"
        # g blends the target look with the source look; at g = 1 the draws and values
        # are those of the data set before the gap option existed.
        g = self.gap
        if target:
            base = rng.uniform(0.1, 0.3, 3)
            coarse = torch.from_numpy(rng.random((1, 3, S // 4, S // 4)).astype(np.float32))
            noise = F.interpolate(coarse, size=(S, S), mode="bilinear")[0]
            img = torch.tensor(base, dtype=torch.float32)[:, None, None] + 0.25 * noise
            if g < 1.0:  # a source background from a separate stream: the draws above stay
                light = np.random.default_rng([self.seed, _SPLITS[self.split], 1, index, 3])
                plain = torch.tensor(light.uniform(0.75, 0.95, 3), dtype=torch.float32)
                img = g * img + (1.0 - g) * plain[:, None, None]
        else:
            img = torch.tensor(rng.uniform(0.75, 0.95, 3), dtype=torch.float32)[:, None, None]
            img = img.expand(3, S, S).clone()
        color = np.array(SHAPE_PALETTE[int(rng.integers(len(SHAPE_PALETTE)))]) / 255.0
        if target:  # another palette, lower contrast
            color = g * (0.35 + 0.5 * color[::-1]) + (1.0 - g) * color
        color = np.clip(color + rng.normal(0, 0.08, 3), 0, 1)
        m = shape_mask(cls, S, rng)
        img[:, m] = torch.tensor(color, dtype=torch.float32)[:, None]
        if target:
            blur = F.avg_pool2d(img[None], 3, stride=1, padding=1, count_include_pad=False)[0]
            img = g * blur + (1.0 - g) * img
            img = img + g * torch.from_numpy(rng.normal(0, 0.06, (3, S, S)).astype(np.float32))
        return (img.clamp(0, 1) * 255).round().to(torch.uint8), m

    @property
    def fingerprint(self) -> str:
        return (
            f"shapes-v1-{self.split}-{self.domain}-s{self.seed}-n{len(self)}-"
            f"{self.image_size}px-imb{self.imbalance:g}"
            + ("" if self.gap == 1.0 else f"-gap{self.gap:g}")
            + ("-seg" if self.segmentation else "")
        )

    def __len__(self) -> int:
        return len(self.labels)

    def image_uint8(self, index: int) -> np.ndarray:
        return self.images[index].permute(1, 2, 0).numpy()

    def mask(self, index: int) -> torch.Tensor:
        """The image-level label at every pixel; with ``segmentation`` the silhouette
        (class + 1) on the background (0)."""
        S, c = self.image_size, int(self.labels[index])
        if self.silhouettes is not None:
            return self.silhouettes[index].long() * (c + 1)
        return torch.full((S, S), c, dtype=torch.long)

    def __getitem__(self, index: int) -> dict:
        return {
            "image": self.images[index].float() / 255.0,
            "mask": self.mask(index),
            "index": index,
            "domain": self.domain,
        }
