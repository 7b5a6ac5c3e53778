"""Procedural street-like scenes in two visual domains: the embedded default data set.

Each image is a function of ``(seed, split, domain, index)`` only, so the data set needs
no download and no disk cache: 1,000 scenes of 64x64 generate in about a second.

The scenes are built to make active learning meaningful:

* class frequencies are strongly imbalanced, like a driving data set: sky, road,
  building and vegetation cover most pixels; poles, signs and people are small or thin;
* every class has a texture (tiles, windows, foliage noise, lane marks) and instance
  colours are jittered so that several classes share colours (grey road, grey
  sidewalk, grey poles, grey overcast sky in the target domain): colour alone does
  not separate them;
* a ring of void pixels (ignore index 255) surrounds small objects, as in Cityscapes;
* the ``source`` and ``target`` domains differ in palette, lighting, noise and blur.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

IGNORE_INDEX = 255

CLASS_NAMES: tuple[str, ...] = (
    "road",
    "sidewalk",
    "building",
    "vegetation",
    "sky",
    "pole",
    "sign",
    "person",
)
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, POLE, SIGN, PERSON = range(len(CLASS_NAMES))
THING_CLASSES = (POLE, SIGN, PERSON)

# Display colours for masks and overlays (Cityscapes-like).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (107, 142, 35),
    (70, 130, 180),
    (153, 153, 153),
    (220, 220, 0),
    (220, 20, 60),
)

Split = Literal["train", "val", "test"]
Domain = Literal["source", "target"]
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_DOMAIN_ID = {"source": 0, "target": 1}


@dataclass(frozen=True)
class DomainStyle:
    """Appearance of one visual domain. Colours are RGB in [0, 1]."""

    colors: dict[int, tuple[float, float, float]]
    color_jitter: float  # std of per-instance colour jitter
    brightness: float  # multiplicative lighting
    gamma: float
    noise: float  # std of additive pixel noise
    blur_sigma: float  # Gaussian blur in pixels (0 = none)


DOMAINS: dict[str, DomainStyle] = {
    # Sunny, saturated.
    "source": DomainStyle(
        colors={
            ROAD: (0.42, 0.42, 0.44),
            SIDEWALK: (0.55, 0.52, 0.50),
            BUILDING: (0.55, 0.45, 0.38),
            VEGETATION: (0.25, 0.50, 0.20),
            SKY: (0.45, 0.65, 0.90),
            POLE: (0.45, 0.45, 0.45),
            SIGN: (0.85, 0.75, 0.10),
            PERSON: (0.60, 0.25, 0.25),
        },
        color_jitter=0.10,
        brightness=1.0,
        gamma=1.0,
        noise=0.03,
        blur_sigma=0.0,
    ),
    # Overcast dusk: grey sky, autumn foliage, darker, noisier and blurred.
    "target": DomainStyle(
        colors={
            ROAD: (0.35, 0.36, 0.40),
            SIDEWALK: (0.45, 0.45, 0.48),
            BUILDING: (0.50, 0.50, 0.55),
            VEGETATION: (0.55, 0.45, 0.20),
            SKY: (0.62, 0.62, 0.66),
            POLE: (0.30, 0.30, 0.32),
            SIGN: (0.20, 0.35, 0.80),
            PERSON: (0.30, 0.30, 0.55),
        },
        color_jitter=0.12,
        brightness=0.8,
        gamma=1.3,
        noise=0.06,
        blur_sigma=0.8,
    ),
}


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> torch.Tensor:
    """Band-limited noise in [-1, 1]: random values on a ``cells`` grid, bicubic-upsampled."""
    coarse = torch.from_numpy(rng.uniform(-1.0, 1.0, (1, 1, cells, cells)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0, 0]


def _jitter(rng: np.random.Generator, rgb: tuple[float, float, float], std: float) -> torch.Tensor:
    shift = rng.normal(0.0, std / 3, 3) + rng.normal(
        0.0, std
    )  # small hue + larger brightness jitter
    return torch.tensor(np.clip(np.asarray(rgb) + shift, 0.0, 1.0), dtype=torch.float32)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(round(2.5 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    img = image[None]  # (1, 3, H, W)
    img = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(3, 1, 1, -1).contiguous(), groups=3)
    img = F.conv2d(img, k.view(1, 1, -1, 1).expand(3, 1, -1, 1).contiguous(), groups=3)
    return img[0]


class _Canvas:
    """A scene being drawn: the image, its labels, pixel coordinates, the random stream."""

    def __init__(self, rng: np.random.Generator, style: DomainStyle, size: int) -> None:
        self.rng, self.style, self.S = rng, style, size
        self.yy, self.xx = torch.meshgrid(
            torch.arange(size, dtype=torch.float32),
            torch.arange(size, dtype=torch.float32),
            indexing="ij",
        )
        self.label = torch.full((size, size), SKY, dtype=torch.int64)
        self.image = torch.zeros(3, size, size)

    def paint(self, region: torch.Tensor, cls: int, texture: torch.Tensor | None = None) -> None:
        S = self.S
        color = _jitter(self.rng, self.style.colors[cls], self.style.color_jitter)
        layer = color[:, None, None].expand(3, S, S)
        if texture is not None:
            layer = (layer * (1.0 + texture)[None]).clamp(0, 1)
        self.image[:, region] = layer[:, region]
        self.label[region] = cls


def _sky_and_skyline(c: _Canvas, label_shift: float) -> int:
    """Sky (vertical gradient + faint clouds), then buildings with window grids and trees
    in some gaps; returns the horizon row."""
    rng, S, yy, xx = c.rng, c.S, c.yy, c.xx
    horizon = int(S * rng.uniform(0.38, 0.52))
    sky_tex = 0.25 * (yy / S - 0.3) + 0.08 * _smooth_noise(rng, S, 4)
    c.paint(torch.ones(S, S, dtype=torch.bool), SKY, sky_tex)
    x = 0
    while x < S:
        width = int(rng.integers(S // 8, S // 3))
        top = int(horizon - rng.uniform(0.15, 0.45) * S)
        cols = (xx >= x) & (xx < x + width)
        if rng.random() < 0.75 - 0.6 * label_shift:
            period = int(rng.integers(3, 6))
            windows = ((yy.long() % period) < period // 2) & (
                (xx.long() - x) % period < period // 2
            )
            tex = -0.35 * windows.float() + 0.05 * _smooth_noise(rng, S, 8)
            c.paint(cols & (yy >= top) & (yy < horizon + 2), BUILDING, tex)
        else:
            cx, cy, r = (
                x + width / 2,
                horizon - rng.uniform(0.05, 0.2) * S,
                rng.uniform(0.1, 0.2) * S,
            )
            crown = ((xx - cx) ** 2 + (yy - cy) ** 2 < r**2) | (
                cols & (yy >= cy) & (yy < horizon + 2)
            )
            c.paint(crown, VEGETATION, 0.35 * _smooth_noise(rng, S, S // 3))
        x += width
    return horizon


def _ground(c: _Canvas, horizon: int) -> float:
    """Perspective road, sidewalks, verges of vegetation; returns the road's centre."""
    rng, S, yy, xx = c.rng, c.S, c.yy, c.xx
    t = ((yy - horizon) / max(S - horizon, 1)).clamp(min=0)  # 0 at horizon, 1 at bottom
    centre = S * rng.uniform(0.4, 0.6)
    half_road = 0.04 * S + t * S * rng.uniform(0.35, 0.55)
    half_walk = half_road + 0.02 * S + t * S * rng.uniform(0.08, 0.18)
    ground = yy >= horizon
    c.paint(ground, VEGETATION, 0.35 * _smooth_noise(rng, S, S // 3))
    tiles = ((yy.long() % 4) == 0) | ((xx.long() % 4) == 0)
    walk_tex = -0.25 * tiles.float() + 0.05 * _smooth_noise(rng, S, 16)
    c.paint(ground & ((xx - centre).abs() < half_walk), SIDEWALK, walk_tex)
    lane = ((xx - centre).abs() < 0.6 + t) & ((yy.long() // 3) % 2 == 0)
    road_tex = 0.08 * _smooth_noise(rng, S, S // 2) + 0.6 * lane.float()
    c.paint(ground & ((xx - centre).abs() < half_road), ROAD, road_tex)
    return centre


def _poles_and_people(c: _Canvas, horizon: int, centre: float, label_shift: float) -> None:
    """Poles (some carrying a sign) on the sidewalk edge; people (torso ellipse + head) on
    the sidewalks or crossing the road."""
    rng, S, yy, xx = c.rng, c.S, c.yy, c.xx
    for _ in range(int(rng.integers(1, 4))):
        side = 1 if rng.random() < 0.5 else -1
        foot = int(rng.uniform(horizon + 0.15 * (S - horizon), S - 1))
        tf = (foot - horizon) / max(S - horizon, 1)
        edge = centre + side * (0.04 * S + tf * S * 0.45 + 0.02 * S)
        px = int(np.clip(edge, 1, S - 3))
        width = 1 + int(tf > 0.5)
        height = int((0.3 + 0.4 * rng.random()) * S * (0.5 + tf))
        top = max(0, foot - height)
        c.paint((xx >= px) & (xx < px + width) & (yy >= top) & (yy <= foot), POLE, None)
        if rng.random() < 0.6:
            sw = 2 + int(rng.integers(1, 4))
            sx, sy = px - sw // 2, top
            c.paint((xx >= sx) & (xx < sx + sw) & (yy >= sy) & (yy < sy + sw), SIGN, None)
    for _ in range(int(rng.integers(0, 4 + round(6 * label_shift)))):
        feet = rng.uniform(horizon + 0.2 * (S - horizon), S - 1)
        tf = (feet - horizon) / max(S - horizon, 1)
        h = (0.08 + 0.12 * tf) * S
        cx = rng.uniform(0.1, 0.9) * S
        body = ((xx - cx) / (0.18 * h)) ** 2 + ((yy - (feet - 0.4 * h)) / (0.4 * h)) ** 2 < 1
        head = (xx - cx) ** 2 + (yy - (feet - 0.9 * h)) ** 2 < (0.13 * h) ** 2
        c.paint(body | head, PERSON, 0.15 * _smooth_noise(rng, S, 8))


def render_scene(
    seed: int, split: Split, domain: Domain, index: int, size: int, label_shift: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one scene. ``label_shift`` in [0, 1] shifts the class frequencies (more trees
    than buildings in the skyline, more people): 0 = the default scenes, unchanged.

    Returns:
        image: (3, size, size) float32 in [0, 1].
        mask: (size, size) int64, class ids in [0, 8) and 255 for void.
    """
    rng = np.random.default_rng([seed, _SPLIT_ID[split], _DOMAIN_ID[domain], index])
    style = DOMAINS[domain]
    S = size
    c = _Canvas(rng, style, S)
    horizon = _sky_and_skyline(c, label_shift)
    centre = _ground(c, horizon)
    _poles_and_people(c, horizon, centre, label_shift)
    # Lighting, blur and noise of the domain.
    image = c.image.clamp(0, 1) * style.brightness
    image = image.clamp(1e-6, 1) ** style.gamma
    if style.blur_sigma > 0:
        image = _gaussian_blur(image, style.blur_sigma)
    image = image + torch.from_numpy(rng.normal(0, style.noise, (3, S, S)).astype(np.float32))
    image = image.clamp(0, 1)
    # Void ring around small objects (label noise at borders, as annotators leave it).
    label = c.label
    things = torch.zeros(S, S, dtype=torch.bool)
    for cls in THING_CLASSES:
        things |= label == cls
    grown = F.max_pool2d(things.float()[None, None], 3, stride=1, padding=1)[0, 0].bool()
    ring = grown & ~things & torch.from_numpy(rng.random((S, S)) < 0.8)
    label[ring] = IGNORE_INDEX
    return image.contiguous(), label


class SyntheticScenes(Dataset):
    """Procedural street scenes; samples follow the alseg sample contract.

    Args:
        split: "train" | "val" | "test"; splits never share a scene.
        num_images: number of scenes.
        image_size: side length in pixels (square images).
        domain: "source" | "target" visual domain.
        seed: data set seed; the scene at ``index`` depends on (seed, split, domain, index).
        label_shift: in [0, 1], shifts the class frequencies (for label-distribution shift
            between domains in active domain adaptation); 0 = default scenes.

    Items are dicts ``{"image": (3,H,W) float, "mask": (H,W) long, "index": int,
    "domain": str}``. All scenes are rendered once at construction (fast) and kept in
    memory as uint8 images.
    """

    num_classes = len(CLASS_NAMES)
    class_names = CLASS_NAMES
    palette = PALETTE
    ignore_index = IGNORE_INDEX

    def __init__(
        self,
        split: Split = "train",
        num_images: int = 200,
        image_size: int = 64,
        domain: Domain = "source",
        seed: int = 0,
        label_shift: float = 0.0,
    ) -> None:
        if split not in _SPLIT_ID:
            raise ValueError(f"split={split!r} is not valid; choose one of {list(_SPLIT_ID)}")
        if domain not in _DOMAIN_ID:
            raise ValueError(f"domain={domain!r} is not valid; choose one of {list(_DOMAIN_ID)}")
        if num_images < 1:
            raise ValueError(f"num_images={num_images} must be >= 1")
        if image_size < 16:
            raise ValueError(f"image_size={image_size} must be >= 16")
        if not 0.0 <= label_shift <= 1.0:
            raise ValueError(f"label_shift={label_shift} must be in [0, 1]")
        self.split, self.domain, self.seed = split, domain, seed
        self.label_shift = float(label_shift)
        self.image_size = image_size
        images, masks = [], []
        for i in range(num_images):
            img, m = render_scene(seed, split, domain, i, image_size, label_shift)
            images.append((img * 255).round().to(torch.uint8))
            masks.append(m.to(torch.uint8))
        self.images = torch.stack(images)  # (N, 3, H, W) uint8
        self.masks = torch.stack(masks)  # (N, H, W) uint8

    @property
    def fingerprint(self) -> str:
        """Identifies the pixels of this data set (for region caches)."""
        return (
            f"synthetic-v1-{self.split}-{self.domain}-s{self.seed}-n{len(self)}-{self.image_size}px"
            + (f"-shift{self.label_shift:g}" if self.label_shift else "")
        )

    def __len__(self) -> int:
        return self.images.shape[0]

    def image_uint8(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 view for region algorithms and overlays."""
        return self.images[index].permute(1, 2, 0).numpy()

    def mask(self, index: int) -> torch.Tensor:
        """(H, W) long ground truth of one image (oracle and evaluation only)."""
        return self.masks[index].long()

    def __getitem__(self, index: int) -> dict:
        return {
            "image": self.images[index].float() / 255.0,
            "mask": self.masks[index].long(),
            "index": index,
            "domain": self.domain,
        }
