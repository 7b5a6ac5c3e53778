"""Losses per label type (pure functions, shapes in docstrings).

Multi-class labels (MulActSeg, docs/methods.md): a labeled region s carries the set Y_s of
classes present. One-hot regions train with CE; multi-hot regions with the merged
positive loss (pixel level) and the prototypical pixel loss (region level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """CE summed over labeled pixels / their count: a batch without labels gives 0, not NaN.

    Args:
        logits: (N, C, ...) logits.
        target: (N, ...) long class ids, ``ignore_index`` where unlabeled.
    Returns:
        scalar.
    """
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum")
    return loss / (target != ignore_index).sum().clamp_min(1)


def merged_positive_loss(
    logits: torch.Tensor, candidates: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """Mean over pixels with at least one candidate of -log sum_{c in candidates} p_c.

    Args:
        logits: (N, C, H, W).
        candidates: (N, C, H, W) bool, the classes each pixel may take.
        temperature: p = softmax(logits / temperature).
    Returns:
        scalar (0 when no pixel has a candidate).
    """
    log_p = torch.log_softmax(logits.float() / temperature, dim=1)
    masked = log_p.masked_fill(~candidates, float("-inf"))
    log_sum = torch.logsumexp(masked, dim=1)  # (N, H, W), -inf where no candidate
    valid = candidates.any(dim=1)
    if not valid.any():
        return logits.sum() * 0.0
    return -log_sum[valid].mean()


def prototypical_pixel_loss(
    logits: torch.Tensor,
    regions: torch.Tensor,
    region_classes: torch.Tensor,
    temperature: float = 1.0,
    multi_only: bool = True,
) -> torch.Tensor:
    """Mean over (image, region, class) with the bit set of -log max_{i in region} p_c(i).

    Vectorised: one scatter-max of log-probabilities over region ids.

    Args:
        logits: (N, C, H, W).
        regions: (N, H, W) long region ids in [0, R).
        region_classes: (N, R, C) bool answers.
        temperature: p = softmax(logits / temperature).
        multi_only: only regions with two or more classes.
    Returns:
        scalar (0 when no pair qualifies).
    """
    N, C, H, W = logits.shape
    R = region_classes.shape[1]
    log_p = torch.log_softmax(logits.float() / temperature, dim=1)  # (N, C, H, W)
    flat = log_p.permute(0, 2, 3, 1).reshape(N, H * W, C)
    index = regions.reshape(N, H * W, 1).expand(-1, -1, C)
    init = torch.full((N, R, C), float("-inf"), device=logits.device)
    best = init.scatter_reduce(1, index, flat, reduce="amax", include_self=True)  # (N, R, C)
    pairs = region_classes.clone()
    if multi_only:
        pairs &= (region_classes.sum(-1) >= 2)[..., None]
    pairs &= best > float("-inf")  # the region has pixels in this crop
    if not pairs.any():
        return logits.sum() * 0.0
    return -best[pairs].mean()


def multiclass_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    regions: torch.Tensor,
    region_classes: torch.Tensor,
    weights: tuple[float, float, float] = (16.0, 8.0, 1.0),
    temperature: float = 1.0,
    ignore_index: int = 255,
) -> dict[str, torch.Tensor]:
    """w_ce L_CE (one-hot regions, via ``target``) + w_mp L_MP + w_pp L_PP (multi-hot regions).

    Args:
        logits: (N, C, H, W); C may include a void output.
        target: (N, H, W) long class of one-hot regions' pixels, ``ignore_index`` elsewhere.
        regions: (N, H, W) long; region_classes: (N, R, C) bool.
    Returns:
        {"loss", "ce", "mp", "pp"} scalars.
    """
    w_ce, w_mp, w_pp = weights
    ce = masked_cross_entropy(logits.float() / temperature, target, ignore_index)
    multi = region_classes & (region_classes.sum(-1) >= 2)[..., None]  # (N, R, C)
    candidates = torch.gather(
        multi, 1, regions.reshape(regions.shape[0], -1, 1).expand(-1, -1, multi.shape[-1])
    )  # (N, HW, C)
    candidates = candidates.view(*regions.shape, -1).permute(0, 3, 1, 2)
    mp = merged_positive_loss(logits, candidates, temperature) if w_mp else logits.sum() * 0.0
    pp = (
        prototypical_pixel_loss(logits, regions, region_classes, temperature)
        if w_pp
        else logits.sum() * 0.0
    )
    return {"loss": w_ce * ce + w_mp * mp + w_pp * pp, "ce": ce, "mp": mp, "pp": pp}


# -- training losses of a module, chosen by the labeling type (alseg.models.factory) ----------
class TrainingLoss(Protocol):
    """A segmentation module's training loss: (logits, batch) -> ``{"loss": total, ...}``;
    the other entries are parts the module logs as ``train/<name>``."""

    def __call__(self, logits: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]: ...


@dataclass(frozen=True)
class PixelCrossEntropy:
    """Cross-entropy on the batch's pixel targets (dominant and pixel labels, pseudo labels)."""

    ignore_index: int = 255

    def __call__(self, logits: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": masked_cross_entropy(logits, batch["target"], self.ignore_index)}


@dataclass(frozen=True)
class MultiClassAnswers:
    """MulActSeg's losses on multi-class answers (``multiclass_loss``: CE on single-class
    regions, merged positive, prototypical pixel, weighted by ``weights``); a batch without
    answers (stage 2 trains on pseudo-label maps) gets the pixel cross-entropy."""

    weights: tuple[float, float, float] = (16.0, 8.0, 1.0)
    num_outputs: int = 0  # answer bits used: C, or C + 1 with a void output
    ignore_index: int = 255

    def __call__(self, logits: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if "region_classes" not in batch:
            return PixelCrossEntropy(self.ignore_index)(logits, batch)
        parts = multiclass_loss(
            logits,
            batch["target"],
            batch["regions"],
            batch["region_classes"][..., : self.num_outputs],
            self.weights,
            ignore_index=self.ignore_index,
        )
        return {k: parts[k] for k in ("ce", "mp", "pp", "loss")}
