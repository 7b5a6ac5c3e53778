"""Region-level quantities of acquisition: class balancing weights, region features and
gradient embeddings (scatter on the tensors' device, no loop over regions).

The plain pixel -> region reductions live one layer down, in ``alseg.scatter`` (the oracle
needs them too); they are re-exported here because this is where the acquisition library
documents them.
"""

from __future__ import annotations

import torch

from alseg.scatter import REDUCTIONS, Reduce, region_class_counts, region_majority, region_reduce

__all__ = [
    "REDUCTIONS",
    "Reduce",
    "region_reduce",
    "region_class_counts",
    "region_majority",
    "minmax_normalize",
    "classbal_weights",
    "region_feature_mean",
    "region_gradient_embedding",
    "sizebal_weights",
    "pixbal_weights",
    "normalized_entropy",
]


def minmax_normalize(x: torch.Tensor) -> torch.Tensor:
    """(x - min) / (max - min) over all entries; constant input -> zeros."""
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


def classbal_weights(region_classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Cai et al. (CVPR 2021) class weights w_c = exp(-share_c).

    Args:
        region_classes: (R,) long predicted dominant class of each candidate region.
    Returns:
        (C,) weights; share_c = fraction of the regions whose dominant class is c.
    """
    counts = torch.bincount(region_classes, minlength=num_classes).float()
    share = counts / counts.sum().clamp_min(1)
    return torch.exp(-share)


def _region_cell_pairs(
    regions: torch.Tensor, cell_shape: tuple[int, int], num_regions: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unique (region, feature cell) pairs of a batch and their pixel counts.

    A pixel (y, x) of an (H, W) image falls in cell (y * h // H, x * w // W) of an (h, w)
    feature map (nearest upsampling). Returns (pair regions, pair global cells, counts),
    each (P,), with cells indexed over the flattened (B, h, w) grid.
    """
    B, H, W = regions.shape
    h, w = cell_shape
    dev = regions.device
    cy = torch.arange(H, device=dev) * h // H
    cx = torch.arange(W, device=dev) * w // W
    cell = (cy[:, None] * w + cx[None, :])[None] + (torch.arange(B, device=dev) * (h * w))[
        :, None, None
    ]
    ncells = B * h * w
    key = regions.reshape(-1).long() * ncells + cell.reshape(-1)
    uniq, counts = torch.unique(key, return_counts=True)
    return uniq // ncells, uniq % ncells, counts


def region_feature_mean(
    features: torch.Tensor, regions: torch.Tensor, num_regions: int
) -> torch.Tensor:
    """Mean of (nearest-upsampled) feature vectors over each region, computed at the
    feature map's resolution: exact, and O(cells x D) memory instead of O(pixels x D).

    Args:
        features: (B, D, h, w) feature maps (e.g. decoder output at 1/4 resolution).
        regions: (B, H, W) long region ids in [0, num_regions).
    Returns:
        (R, D) float region features (zeros for empty regions).
    """
    B, D, h, w = features.shape
    pr, pc, cnt = _region_cell_pairs(regions, (h, w), num_regions)
    flat = features.permute(0, 2, 3, 1).reshape(B * h * w, D).float()
    out = torch.zeros(num_regions, D, device=features.device).index_add(
        0, pr, flat[pc] * cnt[:, None]
    )
    size = torch.zeros(num_regions, device=features.device).index_add(0, pr, cnt.float())
    return out / size.clamp_min(1)[:, None]


def region_gradient_embedding(
    probs: torch.Tensor, features: torch.Tensor, regions: torch.Tensor, num_regions: int
) -> torch.Tensor:
    """BADGE gradient embedding of each region: the mean over its pixels of
    (p - onehot(argmax p)) outer h, the gradient of CE w.r.t. a linear last layer under the
    model's own label. Computed at the feature resolution (``probs`` are area-pooled to it).

    Args:
        probs: (B, C, H, W) softmax probabilities.
        features: (B, D, h, w) penultimate features.
        regions: (B, H, W) long.
    Returns:
        (R, C * D) float.
    """
    B, D, h, w = features.shape
    C = probs.shape[1]
    p = torch.nn.functional.adaptive_avg_pool2d(probs.float(), (h, w))  # (B, C, h, w)
    a = p - torch.nn.functional.one_hot(p.argmax(1), C).permute(0, 3, 1, 2).float()
    pr, pc, cnt = _region_cell_pairs(regions, (h, w), num_regions)
    a_flat = a.permute(0, 2, 3, 1).reshape(-1, C)[pc] * cnt[:, None]  # (P, C)
    h_flat = features.permute(0, 2, 3, 1).reshape(-1, D).float()[pc]  # (P, D)
    out = torch.zeros(num_regions, C, D, device=features.device)
    for c in range(C):  # C index_adds of (P, D): never a (P, C, D) tensor
        out[:, c].index_add_(0, pr, a_flat[:, c : c + 1] * h_flat)
    size = torch.zeros(num_regions, device=features.device).index_add(0, pr, cnt.float())
    return (out / size.clamp_min(1)[:, None, None]).reshape(num_regions, C * D)


def sizebal_weights(
    region_classes: torch.Tensor, region_sizes: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Size-aware class weights (docs/methods.md): w_c = exp(-P_c), P_c = total pixels of the
    regions predicted as c / total pixels of all candidate regions.

    Args:
        region_classes: (R,) long predicted majority class.
        region_sizes: (R,) pixel counts.
    Returns:
        (C,) weights.
    """
    mass = torch.zeros(num_classes, device=region_sizes.device).index_add(
        0, region_classes, region_sizes.float()
    )
    return torch.exp(-mass / mass.sum().clamp_min(1))


def pixbal_weights(mean_probs: torch.Tensor, delta: float) -> torch.Tensor:
    """Pixel-balanced class weights (docs/methods.md): w_c = (1 + delta * pi_c) ** -2.

    Args:
        mean_probs: (C,) pi_c, mean over pool images of the spatial mean of softmax.
    """
    return (1.0 + delta * mean_probs) ** -2


def normalized_entropy(counts: torch.Tensor) -> torch.Tensor:
    """Entropy / log C of histograms (R, C) of non-negative counts -> (R,) in [0, 1]."""
    p = counts.float() / counts.sum(1, keepdim=True).clamp_min(1e-12)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(1)
    return ent / torch.log(torch.tensor(float(counts.shape[1])))
