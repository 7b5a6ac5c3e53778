"""The simulated annotator and the click-cost model.

``SimulatedOracle.annotate(region_ids)`` answers queries from ground truth, exactly as a
person would through the same interface (a human-in-the-loop oracle exports queries and
imports answers with the same ``Annotations`` type).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from alseg.data.labels import LABEL_TYPES, NO_CLASS, Annotations
from alseg.data.regions import RegionSet
from alseg.scatter import region_class_counts


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


def region_label_counts(
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
    return region_class_counts(cls, regions, num_regions, num_classes + 1)  # void = class C


def trimmed_interior(regions: torch.Tensor, kernel: int = 5) -> torch.Tensor:
    """(H, W) bool: pixels outside the regions' boundary band (MulActSeg, docs/methods.md).

    The band is the thick boundary (pixels with a 4-neighbour in another region, on both
    sides) dilated by a ``kernel`` x ``kernel`` square.
    """
    r = regions
    edge = torch.zeros_like(r, dtype=torch.bool)
    edge[1:] |= r[1:] != r[:-1]
    edge[:-1] |= r[1:] != r[:-1]
    edge[:, 1:] |= r[:, 1:] != r[:, :-1]
    edge[:, :-1] |= r[:, 1:] != r[:, :-1]
    band = (
        torch.nn.functional.max_pool2d(edge.float()[None, None], kernel, 1, kernel // 2)[0, 0] > 0
    )
    return ~band


def multiclass_answers(
    mask: torch.Tensor,
    regions: torch.Tensor,
    num_regions: int,
    num_classes: int,
    ignore_index: int,
    void_bit: bool,
    kernel: int = 5,
) -> torch.Tensor:
    """Multi-hot answers of every region of one image (MulActSeg's annotator).

    Classes are collected from the region's pixels outside the boundary band; a region
    with no pixel left answers from all of its pixels. With ``void_bit`` the last bit says
    that a void pixel is among those pixels.

    Returns:
        (R, C + 1) bool if ``void_bit`` else (R, C).
    """
    inner = trimmed_interior(regions, kernel)
    counts_all = region_label_counts(mask, regions, num_regions, num_classes, ignore_index)
    trimmed = torch.where(inner, regions, torch.full_like(regions, num_regions))  # band -> dummy
    counts_in = region_label_counts(mask, trimmed, num_regions + 1, num_classes, ignore_index)[:-1]
    has_inner = counts_in.sum(1) > 0
    counts = torch.where(has_inner[:, None], counts_in, counts_all)
    present = counts > 0
    return present if void_bit else present[:, :num_classes]


class SimulatedOracle:
    """Answers region queries from ground truth (``answers_now``: at once, inside the
    round).

    Args:
        mask_fn: ``index -> (H, W) long`` ground truth of a pool image.
        regions: region maps of the pool.
        num_classes: number of classes.
        label_type: "dominant" (majority class; void-majority -> no usable class),
            "pixel" (every pixel of the region), "multiclass" (the set of classes
            present, one click per class named; at least one click per query) or "image"
            (the same question about a whole image, a tag set: regions must be one per
            image; answers are stored as multi-class answers).
        cost_model: prices dominant / pixel answers (default: one click per region).
        ignore_index: void label in masks.
        void_bit: multiclass answers carry a void bit (the model then has C + 1 outputs).
        trim_kernel: dilation of the boundary band trimmed before collecting classes.
        free_background: class 0 is a background that is not a question (image tags of
            VOC: one click per object class named, at least one per image).
    """

    def __init__(
        self,
        mask_fn: Callable[[int], torch.Tensor],
        regions: RegionSet,
        num_classes: int,
        label_type: str,
        cost_model: CostModel | None = None,
        ignore_index: int = 255,
        void_bit: bool = False,
        trim_kernel: int = 5,
        free_background: bool = False,
    ) -> None:
        if label_type not in (*LABEL_TYPES, "image"):
            raise ValueError(
                f"label_type={label_type!r} is not valid; choose one of {[*LABEL_TYPES, 'image']}"
            )
        self.mask_fn, self.regions = mask_fn, regions
        self.num_classes, self.label_type = num_classes, label_type
        self.cost_model: CostModel = cost_model or ClickCost()
        self.ignore_index = ignore_index
        self.void_bit, self.trim_kernel = void_bit, trim_kernel
        self._bits: np.ndarray | None = None  # cached multi-hot answers of the whole pool
        self.answers_now = True
        self.multi_hot = label_type in ("multiclass", "image")
        self.free_background = free_background

    def _all_bits(self) -> np.ndarray:
        """(R_total, B) bool multi-hot answers of every pool region, computed once."""
        if self._bits is None:
            rows = [
                multiclass_answers(
                    self.mask_fn(i),
                    self.regions.map_tensor(i),
                    int(self.regions.num_regions[i]),
                    self.num_classes,
                    self.ignore_index,
                    self.void_bit,
                    self.trim_kernel,
                ).numpy()
                for i in range(len(self.regions))
            ]
            self._bits = np.concatenate(rows)
        return self._bits

    def query_costs(self, region_ids: np.ndarray) -> np.ndarray:
        """(K,) click cost of asking each region.

        Multi-class answers cost one click per class named, known only once asked. The
        selection walks regions by descending score and stops at the first one that does
        not fit the budget, so using the simulated answers' costs here gives exactly the
        selection of asking region after region until the budget is spent.
        """
        ids = np.asarray(region_ids, dtype=np.int64)
        if self.multi_hot:
            return self._clicks(self._all_bits()[ids])
        return self.cost_model.query_costs(ids)

    def _clicks(self, bits: np.ndarray) -> np.ndarray:
        """(K,) clicks of multi-hot answers: one per class named (the background not
        counted with ``free_background``), at least one."""
        n = bits.sum(1) - (bits[:, 0] if self.free_background else 0)
        return np.maximum(1, n).astype(np.float64)

    def dominant_classes(self, index: int) -> np.ndarray:
        """(R_i,) dominant ground-truth class of each region of image ``index`` (void
        counts as a class: a void-majority region gets NO_CLASS)."""
        counts = region_label_counts(
            self.mask_fn(index),
            self.regions.map_tensor(index),
            int(self.regions.num_regions[index]),
            self.num_classes,
            self.ignore_index,
        )
        dom = counts.argmax(dim=1).numpy()  # ties: lowest class id
        dom[dom == self.num_classes] = NO_CLASS
        return dom.astype(np.int64)

    def annotate_merged(
        self, queries: np.ndarray, root: np.ndarray, scores: np.ndarray | None = None
    ) -> Annotations:
        """Dominant-label answers for merged regions, recorded against their base regions.

        Args:
            queries: (Q,) global ids of the queried merged regions' roots.
            root: (R_total,) root of every base region (``AdaptiveSizeBalancedBvSB``).
            scores: (Q,) scores of the queries (for the record).
        Returns:
            one row per base region of the queried merged regions: the merged region's
            dominant class over all its pixels (void majority: NO_CLASS), ``query`` = the
            root, the query's cost on the root's row and 0 on the others.
        """
        if self.label_type != "dominant":
            raise ValueError(
                f"merged-region queries are answered with dominant labels, not {self.label_type!r}"
            )
        queries = np.asarray(queries, dtype=np.int64)
        q_scores = np.zeros(queries.size) if scores is None else np.asarray(scores, np.float64)
        members = np.flatnonzero(np.isin(root, queries))
        group = np.searchsorted(np.sort(queries), root[members])
        order = np.argsort(queries)  # sorted position -> query index
        group = order[group]
        images, local = self.regions.split_ids(members)
        counts = np.zeros((queries.size, self.num_classes + 1), dtype=np.int64)
        for img in np.unique(images):
            sel = images == img
            per_region = region_label_counts(
                self.mask_fn(int(img)),
                self.regions.map_tensor(int(img)),
                int(self.regions.num_regions[img]),
                self.num_classes,
                self.ignore_index,
            ).numpy()
            np.add.at(counts, group[sel], per_region[local[sel]])
        dom = counts.argmax(1)  # ties: lowest class id
        dom[dom == self.num_classes] = NO_CLASS
        is_root = members == queries[group]
        q_costs = self.cost_model.answer_costs(queries, dom)
        return Annotations(
            region_ids=members,
            label_type="dominant",
            classes=dom[group],
            costs=np.where(is_root, q_costs[group], 0.0),
            scores=q_scores[group],
            query=queries[group],
        )

    def annotate(self, region_ids: np.ndarray, scores: np.ndarray | None = None) -> Annotations:
        """Answer queries for the given global region ids (unique)."""
        ids = np.asarray(region_ids, dtype=np.int64)
        classes = np.full(ids.size, NO_CLASS, dtype=np.int64)
        if self.multi_hot:
            return self.answers(ids, self._all_bits()[ids], scores)
        if self.label_type == "dominant" and ids.size:
            images, local = self.regions.split_ids(ids)
            for img in np.unique(images):
                sel = images == img
                classes[sel] = self.dominant_classes(int(img))[local[sel]]
        return self.answers(ids, classes, scores)

    def answers(
        self, ids: np.ndarray, given: np.ndarray, scores: np.ndarray | None = None
    ) -> Annotations:
        """The Annotations of answers given to queries ``ids`` — from ground truth or from
        people (``alseg import``): ``given`` is (K, B) bool multi-hot answers (multiclass,
        image; B = C, + 1 with the void bit) or (K,) classes (dominant; NO_CLASS: no usable
        class; pixel: NO_CLASS). Prices them: one click per class named (at least one), or
        the cost model."""
        ids = np.asarray(ids, dtype=np.int64)
        scores = np.zeros(ids.size) if scores is None else scores
        if self.multi_hot:
            bits = np.asarray(given, dtype=bool)
            n = bits.sum(1)
            one = (n == 1) & ~(bits[:, -1] if self.void_bit else np.zeros(ids.size, bool))
            classes = np.full(ids.size, NO_CLASS, dtype=np.int64)
            classes[one] = bits[one].argmax(1)
            costs = self._clicks(bits)
            return Annotations(ids, "multiclass", classes, costs, scores, bits=bits)
        classes = np.asarray(given, dtype=np.int64)
        costs = self.cost_model.answer_costs(ids, classes)
        return Annotations(ids, self.label_type, classes, costs, scores)


class HumanOracle(SimulatedOracle):
    """Queries that people answer (``labeling.oracle=human``): the loop writes them to the
    run dir and waits (``alseg export`` / ``alseg import``); ``answers`` turns what people
    said into Annotations exactly as the simulated oracle prices its own.

    A multi-class (or image) answer costs one click per class named, known only once
    answered; selection prices such a query at ``expected_cost()`` (the mean cost of the
    answers so far; before the first answer, the most it can cost: every class, and void),
    so a round spends about its budget (round 0 at most its budget) and the real clicks
    are what is recorded.

    Args:
        expected_cost: ``() ->`` the price of a multi-class query at selection time.
        *args, **kwargs: those of ``SimulatedOracle`` (ground truth is never read).
    """

    def __init__(
        self, *args: Any, expected_cost: Callable[[], float | None], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.expected_cost = expected_cost
        self.answers_now = False

    def query_costs(self, region_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(region_ids, dtype=np.int64)
        if self.multi_hot:
            known = self.expected_cost()
            most = float(self.num_classes + int(self.void_bit))
            return np.full(ids.size, max(1.0, known) if known is not None else most)
        return self.cost_model.query_costs(ids)

    def annotate(self, region_ids: np.ndarray, scores: np.ndarray | None = None) -> Annotations:
        """The queries, not yet answered: no class, the selection-time price."""
        ids = np.asarray(region_ids, dtype=np.int64)
        none = np.full(ids.size, NO_CLASS, dtype=np.int64)
        bits = np.zeros((ids.size, self.num_classes + int(self.void_bit)), bool)
        return Annotations(
            ids,
            "multiclass" if self.multi_hot else self.label_type,
            none,
            self.query_costs(ids),
            np.zeros(ids.size) if scores is None else scores,
            bits=bits if self.multi_hot else None,
        )

    def annotate_merged(self, *args: Any, **kwargs: Any) -> Annotations:
        raise ValueError("merged-region queries (adaptive superpixels) are simulated only")
