"""Training augmentation applied jointly to an image, its target and its region map.

Random scale (bilinear for the image, nearest for label-like maps), random crop with
padding (image 0, target ``ignore_index``, regions ``pad_region``) and horizontal flip, as
in the published protocols (scale 0.5-2.0, crop 768 / 513 / 769, flip). Labels stay in the
pool image's coordinates until this point, so the LabelStore never sees augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

LABEL_KEYS = ("target", "mask", "regions")


@dataclass
class TrainAugment:
    """Args:
    scale_range: (min, max) random rescale factor; None = no rescaling.
    crop: (height, width) of the random crop; None = the whole (rescaled) image.
    hflip: random horizontal flip with probability 1/2.
    ignore_index: fill of ``target`` where the crop pads.
    pad_region: fill of ``regions`` where the crop pads (an id with no answer).
    """

    scale_range: tuple[float, float] | None = None
    crop: tuple[int, int] | None = None
    hflip: bool = True
    ignore_index: int = 255
    pad_region: int = 0

    def __post_init__(self) -> None:
        if self.scale_range is not None:
            lo, hi = self.scale_range
            if not 0 < lo <= hi:
                raise ValueError(f"scale_range={self.scale_range} must satisfy 0 < min <= max")
        if self.crop is not None and min(self.crop) < 1:
            raise ValueError(f"crop={self.crop} must be positive")

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        """``item`` holds ``image`` (3,H,W) float and label maps (H,W) long; returns it changed."""
        if self.scale_range is not None:
            self._rescale(item, float(torch.empty(()).uniform_(*self.scale_range)))
        if self.crop is not None:
            self._crop(item, *self.crop)
        if self.hflip and torch.rand(()) < 0.5:
            for key in ("image", *LABEL_KEYS):
                if key in item:
                    item[key] = item[key].flip(-1)
        return item

    @staticmethod
    def _rescale(item: dict[str, Any], scale: float) -> None:
        H, W = item["image"].shape[-2:]
        size = (max(1, round(H * scale)), max(1, round(W * scale)))
        if size == (H, W):
            return
        item["image"] = F.interpolate(
            item["image"][None], size=size, mode="bilinear", align_corners=False
        )[0]
        for key in LABEL_KEYS:
            if key in item:
                m = item[key][None, None].float()
                item[key] = F.interpolate(m, size=size, mode="nearest")[0, 0].long()

    def _crop(self, item: dict[str, Any], ch: int, cw: int) -> None:
        H, W = item["image"].shape[-2:]
        ph, pw = max(ch - H, 0), max(cw - W, 0)
        fill = {
            "image": 0.0,
            "target": self.ignore_index,
            "mask": self.ignore_index,
            "regions": self.pad_region,
        }
        if ph or pw:  # pad bottom/right so the crop fits
            for key, value in fill.items():
                if key in item:
                    item[key] = F.pad(item[key], (0, pw, 0, ph), value=value)
        H, W = H + ph, W + pw
        y = int(torch.randint(0, H - ch + 1, ()))
        x = int(torch.randint(0, W - cw + 1, ()))
        for key in fill:
            if key in item:
                item[key] = item[key][..., y : y + ch, x : x + cw]
