"""Pixel -> region reductions by scatter, on the tensors' device.

The lowest layer of alseg: the oracle (``alseg.data``) counts ground-truth classes per
region with them and the acquisition library (``alseg.acquisition``) reduces pixel scores
to region scores. No Python loop over regions: a handful of scatter/bincount kernels, so a
batch of Cityscapes images (millions of pixels, thousands of regions) reduces in
milliseconds on the device that produced the logits.
"""

from __future__ import annotations

from typing import Literal

import torch

Reduce = Literal["mean", "sum", "max"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "max")


def region_reduce(
    values: torch.Tensor, regions: torch.Tensor, num_regions: int, reduce: Reduce = "mean"
) -> torch.Tensor:
    """Reduce pixel values to region values.

    Args:
        values: (*S) or (*S, K) pixel values, S the pixel shape of ``regions``.
        regions: (*S) long region ids in [0, num_regions).
        num_regions: number of regions R.
        reduce: "mean" | "sum" | "max". Empty regions get 0.
    Returns:
        (R,) or (R, K) region values, float, on the device of ``values``.
    """
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce={reduce!r} is not valid; choose one of {list(REDUCTIONS)}")
    if values.shape[: regions.dim()] != regions.shape:
        raise ValueError(
            f"values shape {tuple(values.shape)} must start with "
            f"regions shape {tuple(regions.shape)}"
        )
    idx = regions.reshape(-1)
    vals = values.reshape(idx.numel(), -1).float()  # (P, K)
    k = vals.shape[1]
    out = torch.zeros(num_regions, k, dtype=vals.dtype, device=vals.device)
    index = idx[:, None].expand(-1, k)
    if reduce == "max":
        out = out.scatter_reduce(0, index, vals, reduce="amax", include_self=False)
    else:
        out = out.index_add(0, idx, vals)
        if reduce == "mean":
            counts = torch.bincount(idx, minlength=num_regions).clamp_min(1)
            out = out / counts[:, None].to(out.dtype)
    return out if values.dim() > regions.dim() else out[:, 0]


def region_class_counts(
    classes: torch.Tensor, regions: torch.Tensor, num_regions: int, num_classes: int
) -> torch.Tensor:
    """(R, C) long counts of pixels of each class in each region; ``classes`` (*S) long in
    [0, num_classes), ``regions`` (*S) long."""
    flat = regions.reshape(-1) * num_classes + classes.reshape(-1)
    return torch.bincount(flat, minlength=num_regions * num_classes).view(num_regions, num_classes)


def region_majority(
    classes: torch.Tensor, regions: torch.Tensor, num_regions: int, num_classes: int
) -> torch.Tensor:
    """(R,) long majority class of each region (ties: lowest class id)."""
    return region_class_counts(classes, regions, num_regions, num_classes).argmax(dim=1)
