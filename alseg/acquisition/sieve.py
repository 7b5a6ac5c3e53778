"""Sieving (Kim et al., ICCV 2023; METHODS.md B): in each labeled merged region of at
least ``min_size`` pixels, drop the pixels whose confidence (last round's model) for the
region's answered class is below the knee of the region's sorted confidences.

The drop masks are computed once per round, right after the answers arrive, with the model
that selected the regions; training targets then read them (``LabeledView.set_sieve``).
Their accuracy against ground truth is measured for the record only (never for training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alseg.acquisition.adaptive import knee_threshold
from alseg.data.labels import NO_CLASS, Annotations


@dataclass
class SieveConfig:
    """Args:
    min_size: merged regions smaller than this keep all pixels (512 in the paper) ...
    reference_area: ... at this image area (1024 x 2048); the threshold scales with the
        image's area, so small images sieve proportionally small regions ...
    min_pixels: ... but never below this (the knee needs points to be found).
    step: subsampling of the knee search (every n / step values).
    """

    min_size: int = 512
    reference_area: int = 1024 * 2048
    min_pixels: int = 20
    step: int = 20

    def threshold(self, area: int) -> int:
        return max(self.min_pixels, round(self.min_size * area / self.reference_area))


def sieve_pixels(
    confidence: torch.Tensor, groups: torch.Tensor, min_pixels: int, step: int = 20
) -> torch.Tensor:
    """Pixels to drop from the labels of one image: in each group (labeled merged region)
    of at least ``min_pixels`` pixels, those whose confidence for the group's label is below
    the knee of the group's sorted confidences (no knee: keep all).

    Args:
        confidence: (H, W) model confidence for each pixel's answered label.
        groups: (H, W) long group id of each pixel, -1 outside the sieved groups.
        min_pixels: smaller groups keep every pixel.
        step: subsampling of the knee search (``knee_threshold``).
    Returns:
        (H, W) bool, True = drop.
    """
    drop = torch.zeros_like(groups, dtype=torch.bool)
    ids, counts = torch.unique(groups[groups >= 0], return_counts=True)
    for g in ids[counts >= min_pixels].tolist():
        px = groups == g
        t = knee_threshold(confidence[px], step)
        drop |= px & (confidence < t)
    return drop


@torch.no_grad()
def sieve_labels(
    model: torch.nn.Module,
    dataset: Any,
    regions: Any,
    mask_fn: Any,
    ann: Annotations,
    cfg: SieveConfig,
    ignore_index: int = 255,
) -> tuple[dict[int, torch.Tensor], dict[str, float]]:
    """Drop masks of the images labeled by ``ann`` and their accuracy.

    Returns:
        ``{image index: (H, W) bool drop mask}`` and stats: ``sieve_kept_acc`` /
        ``sieve_dropped_acc`` (% of kept / dropped pixels of sieved regions whose ground
        truth is the answered class; void ground truth left out), ``sieve_dropped_pct``
        (% of the sieved regions' pixels dropped), ``sieve_regions`` (queries sieved).
    """
    model.eval()
    device = next(model.parameters()).device
    groups = ann.query if ann.query is not None else ann.region_ids
    usable = ann.classes != NO_CLASS
    images, local = regions.split_ids(ann.region_ids)
    drops: dict[int, torch.Tensor] = {}
    n = np.zeros(5, dtype=np.int64)  # kept ok, kept, dropped ok, dropped, sieved queries
    for img in np.unique(images[usable]).tolist():
        sel = (images == img) & usable
        rmap = regions.map_tensor(img)
        g_lut = torch.full((int(regions.num_regions[img]),), -1, dtype=torch.long)
        c_lut = g_lut.clone()
        g_lut[local[sel]] = torch.from_numpy(groups[sel])
        c_lut[local[sel]] = torch.from_numpy(ann.classes[sel])
        gmap, cmap = g_lut[rmap], c_lut[rmap]
        thr = cfg.threshold(rmap.numel())
        ids, counts = torch.unique(gmap[gmap >= 0], return_counts=True)
        big = ids[counts >= thr]
        if big.numel() == 0:
            continue
        image = dataset[img]["image"][None].to(device)
        prob = torch.softmax(model(image).float(), 1)[0].cpu()
        conf = prob.gather(0, cmap.clamp_min(0)[None])[0]
        drop = sieve_pixels(conf, gmap, thr, cfg.step)
        drops[img] = drop
        gt = mask_fn(img)
        sieved = torch.isin(gmap, big) & (gt != ignore_index)
        ok = gt == cmap
        n += np.array(
            [
                int((sieved & ~drop & ok).sum()),
                int((sieved & ~drop).sum()),
                int((sieved & drop & ok).sum()),
                int((sieved & drop).sum()),
                big.numel(),
            ]
        )

    def pct(a: int, b: int) -> float:
        return round(100.0 * a / b, 4) if b else float("nan")

    stats = {
        "sieve_kept_acc": pct(n[0], n[1]),
        "sieve_dropped_acc": pct(n[2], n[3]),
        "sieve_dropped_pct": pct(n[3], n[1] + n[3]),
        "sieve_regions": float(n[4]),
    }
    return drops, stats
