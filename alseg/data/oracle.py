"""The simulated annotator and the click-cost model.

``SimulatedOracle.annotate(region_ids)`` answers queries from ground truth, exactly as a
person would through the same interface (a human-in-the-loop oracle exports queries and
imports answers with the same ``Annotations`` type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from alseg.data.labels import LABEL_TYPES, NO_CLASS, Annotations
from alseg.data.regions import RegionSet


class CostModel(Protocol):
    """Prices queries in clicks."""

    def query_costs(self, region_ids: np.ndarray) -> np.ndarray:
        """(K,) cost expected before asking (used by budgeted selection)."""
        ...

    def answer_costs(self, region_ids: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """(K,) cost actually paid for the answers."""
        ...


class ClickCost:
    """One click per region (dominant labels; pixel labels priced per region)."""

    def __init__(self, per_region: float = 1.0) -> None:
        if per_region <= 0:
            raise ValueError(f"per_region={per_region} must be > 0")
        self.per_region = float(per_region)

    def query_costs(self, region_ids: np.ndarray) -> np.ndarray:
        return np.full(len(region_ids), self.per_region)

    def answer_costs(self, region_ids: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return np.full(len(region_ids), self.per_region)


def region_class_counts(
    mask: torch.Tensor, regions: torch.Tensor, num_regions: int, num_classes: int, ignore_index: int
) -> torch.Tensor:
    """Histogram of ground-truth classes per region.

    Args:
        mask: (H, W) long class ids, ``ignore_index`` for void.
        regions: (H, W) long region ids in [0, num_regions).
    Returns:
        (num_regions, num_classes + 1) long counts; the last column counts void pixels.
    """
    cls = torch.where(mask == ignore_index, torch.full_like(mask, num_classes), mask)
    if cls.max() > num_classes or cls.min() < 0:
        raise ValueError(f"mask has labels outside [0, {num_classes}) and not {ignore_index}")
    flat = regions.reshape(-1) * (num_classes + 1) + cls.reshape(-1)
    counts = torch.bincount(flat, minlength=num_regions * (num_classes + 1))
    return counts.view(num_regions, num_classes + 1)


class SimulatedOracle:
    """Answers region queries from ground truth.

    Args:
        mask_fn: ``index -> (H, W) long`` ground truth of a pool image.
        regions: region maps of the pool.
        num_classes: number of classes.
        label_type: "dominant" (majority class; void-majority -> no usable class) or
            "pixel" (every pixel of the region).
        cost_model: prices answers (default: one click per region).
        ignore_index: void label in masks.
    """

    def __init__(
        self,
        mask_fn: Callable[[int], torch.Tensor],
        regions: RegionSet,
        num_classes: int,
        label_type: str,
        cost_model: CostModel | None = None,
        ignore_index: int = 255,
    ) -> None:
        if label_type not in LABEL_TYPES:
            raise ValueError(
                f"label_type={label_type!r} is not valid; choose one of {list(LABEL_TYPES)}"
            )
        self.mask_fn, self.regions = mask_fn, regions
        self.num_classes, self.label_type = num_classes, label_type
        self.cost_model: CostModel = cost_model or ClickCost()
        self.ignore_index = ignore_index

    def dominant_classes(self, index: int) -> np.ndarray:
        """(R_i,) dominant ground-truth class of each region of image ``index`` (void
        counts as a class: a void-majority region gets NO_CLASS)."""
        counts = region_class_counts(
            self.mask_fn(index),
            self.regions.map_tensor(index),
            int(self.regions.num_regions[index]),
            self.num_classes,
            self.ignore_index,
        )
        dom = counts.argmax(dim=1).numpy()  # ties: lowest class id
        dom[dom == self.num_classes] = NO_CLASS
        return dom.astype(np.int64)

    def annotate(self, region_ids: np.ndarray, scores: np.ndarray | None = None) -> Annotations:
        """Answer queries for the given global region ids (unique)."""
        ids = np.asarray(region_ids, dtype=np.int64)
        classes = np.full(ids.size, NO_CLASS, dtype=np.int64)
        if self.label_type == "dominant" and ids.size:
            images, local = self.regions.split_ids(ids)
            for img in np.unique(images):
                sel = images == img
                classes[sel] = self.dominant_classes(int(img))[local[sel]]
        return Annotations(
            region_ids=ids,
            label_type=self.label_type,
            classes=classes,
            costs=self.cost_model.answer_costs(ids, classes),
            scores=np.zeros(ids.size) if scores is None else scores,
        )
