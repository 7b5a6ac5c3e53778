"""Learning from image tags: pooled class scores, the multi-label loss, class activation
maps (CAMs) and the confident areas that supervise boundaries.

A classifier whose last layer is a 1x1 convolution gives class maps (N, C, h, w); pooling
them gives image-level scores trained against the tags with the multi-label soft-margin
loss (IRN's ``train_cam.py``). A CAM is ReLU of the class maps, multi-scale + flip
averaged, restricted to the tagged classes and divided by its maximum per class
(IRN's ``make_cam.py``: ``cam / (max + 1e-5)``).

Shapes: class maps (N, C, h, w); tags (N, C) in {0, 1}; CAMs (N, C, H, W) in [0, 1], zero
for untagged classes; labels (N, H, W) long, ``ignore_index`` where not confident.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from alseg.models.specs import TagSpec

POOLINGS = ("gap", "gmp", "lse")


def pool_class_maps(maps: torch.Tensor, kind: str = "gap", r: float = 5.0) -> torch.Tensor:
    """(N, C, h, w) -> (N, C) image-level class scores.

    ``gap``: the mean (IRN); ``gmp``: the maximum; ``lse``: log-sum-exp pooling
    (1/r) log mean exp(r s), between the two (r -> 0: mean, r -> inf: max).
    """
    flat = maps.flatten(2)
    if kind == "gap":
        return flat.mean(2)
    if kind == "gmp":
        return flat.amax(2)
    if kind == "lse":
        if r <= 0:
            raise ValueError(f"lse pooling needs r > 0, got {r}")
        n = flat.shape[2]
        return (torch.logsumexp(r * flat, dim=2) - torch.log(torch.tensor(float(n)))) / r
    raise ValueError(f"unknown pooling {kind!r}; valid: {', '.join(POOLINGS)}")


def tag_loss(scores: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    """Multi-label soft-margin loss: the mean over classes and images of
    -[t log sigmoid(s) + (1 - t) log sigmoid(-s)] (``F.multilabel_soft_margin_loss``)."""
    return F.multilabel_soft_margin_loss(scores, tags.float())


def normalized_cams(maps: torch.Tensor, tags: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """ReLU of the class maps, upsampled to ``size`` (bilinear), divided by the per-class
    maximum (+ 1e-5) and zeroed for untagged classes: (N, C, H, W) in [0, 1]."""
    cam = F.interpolate(F.relu(maps), size=size, mode="bilinear", align_corners=False)
    cam = cam / (cam.flatten(2).amax(2)[..., None, None] + 1e-5)
    return cam * tags[..., None, None].to(cam.dtype)


def multiscale_cams(
    class_maps: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tags: torch.Tensor,
    scales: Sequence[float] = (1.0, 0.5, 1.5, 2.0),
    flip: bool = True,
) -> torch.Tensor:
    """CAMs of ``images`` (N, 3, H, W): the ReLU class maps of every scale (and its
    horizontal flip, flipped back) summed at full resolution, then normalised per class
    and restricted to the tags (IRN's ``make_cam.py``, its scales by default)."""
    H, W = images.shape[-2:]
    total = None
    for s in scales:
        x = images if s == 1.0 else F.interpolate(images, scale_factor=s, mode="bilinear")
        views = [x, x.flip(-1)] if flip else [x]
        for k, v in enumerate(views):
            m = F.relu(class_maps(v))
            m = m.flip(-1) if k else m
            m = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)
            total = m if total is None else total + m
    assert total is not None
    return normalized_cams(total, tags, (H, W))


def cam_labels(
    cams: torch.Tensor, tags: torch.Tensor, background: float | None = None
) -> torch.Tensor:
    """(N, H, W) class of each pixel from its CAMs: the argmax over the tagged classes.

    ``background``: a data set with a background class (VOC) — class 0 wherever no tagged
    CAM reaches this threshold (IRN's ``sem_seg_bg_thres``); ``None`` for street scenes,
    where every pixel belongs to a tagged class.
    """
    score = cams.masked_fill(tags[..., None, None] == 0, -1.0)
    if background is not None:
        score[:, 0] = background  # class 0 is the background
    return score.argmax(1)


def confident_labels(
    cams: torch.Tensor,
    tags: torch.Tensor,
    fg: float = 0.30,
    bg: float = 0.05,
    background: bool = False,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Confident areas (N, H, W): where labels supervise the boundary map.

    With a background class (IRN's ``cam_to_ir_label.py``, without its CRF; class 0 is the
    background and has no CAM): the top tagged class where its CAM is > ``fg``; background
    where every tagged CAM is <= ``bg``; ``ignore_index`` between. Without one (street
    scenes; our choice, the paper does not say): the top tagged class where its CAM is >
    ``fg`` and every other tagged CAM is <= ``bg``; ``ignore_index`` elsewhere.
    """
    score = cams.masked_fill(tags[..., None, None] == 0, -1.0)
    if background:
        score = score[:, 1:]  # the background has no CAM of its own
    top2 = score.topk(min(2, score.shape[1]), dim=1)
    first = top2.values[:, 0]
    second = top2.values[:, 1] if score.shape[1] > 1 else torch.full_like(first, -1.0)
    label = top2.indices[:, 0] + (1 if background else 0)
    out = torch.full_like(label, ignore_index)
    if background:
        out = torch.where(first > fg, label, out)
        out = torch.where(first <= bg, torch.zeros_like(label), out)
    else:
        out = torch.where((first > fg) & (second <= bg), label, out)
    return out


@dataclass(frozen=True)
class ImageTagLoss:
    """The training loss on image tags (``labeling=image``): the class maps pooled by
    ``spec.pooling`` into image scores, multi-label soft-margin loss against the tags (the
    answer of region 0, the whole image); a background class without a CAM (IRN) is left
    out."""

    spec: TagSpec
    num_classes: int

    def __call__(self, logits: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        first = 1 if self.spec.background else 0
        maps = logits[:, first : self.num_classes].float()
        scores = pool_class_maps(maps, self.spec.pooling, self.spec.lse_r)
        return {"loss": tag_loss(scores, batch["region_classes"][:, 0, first : self.num_classes])}
