"""Uncertainty strategies: a pixel score reduced per region, optionally class-balanced.

``entropy``, ``margin``, ``bvsb``, ``least_confidence`` (``PixelScoreStrategy``), ``bald``,
``classbal`` (Cai et al.), ``sizebal`` (adaptive superpixels' size-aware weights),
``pixbal`` (MulActSeg, two passes) and ``ripu`` (region impurity x uncertainty). The
formulas and the papers' values are in ``docs/methods.md``.

A ``temperature`` T applies to the classifier's raw scores (the cosine of a cosine head,
the logits of a linear one): p = softmax(raw / T). ``None`` means the logits the model
trains with (raw / the head's own temperature).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alseg.acquisition import scores as S
from alseg.acquisition.base import (
    BatchOutputs,
    PoolStats,
    RegionStats,
    Selection,
    SelectionContext,
    Stats,
    Strategy,
)
from alseg.acquisition.reduce import (
    classbal_weights,
    minmax_normalize,
    normalized_entropy,
    pixbal_weights,
    region_class_counts,
    region_majority,
    region_reduce,
    sizebal_weights,
)


def _check_temperature(temperature: float | None) -> None:
    if temperature is not None and temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 (or null: the model's logits)")


class PixelScoreStrategy(Strategy):
    """Mean over each region of a pixel score of ``scores.PIXEL_SCORES``."""

    def __init__(
        self, score: str, temperature: float | None = None, power: float | None = None
    ) -> None:
        super().__init__(power)
        if score not in S.PIXEL_SCORES:
            raise ValueError(f"score={score!r} is not valid; choose one of {list(S.PIXEL_SCORES)}")
        _check_temperature(temperature)
        self.name = score
        self._fn: Callable[..., torch.Tensor] = S.PIXEL_SCORES[score]
        self.temperature = temperature

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        pixel = self._fn(batch.scaled_logits(self.temperature))  # (B, H, W)
        return RegionStats(score=region_reduce(pixel, batch.regions, batch.num_regions, "mean"))


class BALDStrategy(Strategy):
    """Region mean of BALD over ``mc_samples`` MC-dropout passes (dropout layers only are
    switched on at scoring time; batch norm stays in eval mode)."""

    name = "bald"

    def __init__(self, mc_samples: int = 8, power: float | None = None) -> None:
        super().__init__(power)
        if mc_samples < 2:
            raise ValueError(f"mc_samples={mc_samples} must be >= 2 for BALD")
        self.mc_samples = mc_samples

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        if batch.logits.dim() != 5:
            raise ValueError("bald needs MC samples: logits (B, C, H, W, T)")
        pixel = S.bald(batch.logits)  # (B, H, W)
        return RegionStats(score=region_reduce(pixel, batch.regions, batch.num_regions, "mean"))


class ClassBalancedBvSB(Strategy):
    """Cai et al. (CVPR 2021): min-max normalised mean BvSB of the region x exp(-share of
    candidate regions whose predicted dominant class is that of the region)."""

    name = "classbal"

    def __init__(self, temperature: float | None = None, power: float | None = None) -> None:
        super().__init__(power)
        _check_temperature(temperature)
        self.temperature = temperature

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        pixel = S.bvsb(batch.scaled_logits(self.temperature))
        pred = batch.logits.argmax(dim=1)  # (B, H, W)
        n = batch.num_regions
        return RegionStats(
            pred=region_majority(pred, batch.regions, n, batch.logits.shape[1]),
            regions={
                "bvsb": region_reduce(pixel, batch.regions, n, "mean"),
                "size": torch.bincount(batch.regions.reshape(-1), minlength=n),
            },
        )

    def class_weights(
        self, pred: torch.Tensor, size: torch.Tensor, num_classes: int
    ) -> torch.Tensor:
        return classbal_weights(pred, num_classes)

    def candidates(self, stats: PoolStats, labeled: torch.Tensor) -> torch.Tensor:
        """(R,) bool regions that may be selected (scored, not labeled)."""
        return ~labeled & stats.scored.to(labeled.device)

    def scores(
        self, stats: PoolStats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        assert stats.pred is not None  # region_stats sets it
        bvsb, pred = stats.regions["bvsb"], stats.pred.long()
        cand = self.candidates(stats, labeled.to(bvsb.device))
        out = torch.full_like(bvsb, float("nan"))
        if cand.any():
            w = self.class_weights(pred[cand], stats.regions["size"][cand], int(pred.max()) + 1)
            out[cand] = minmax_normalize(bvsb[cand]) * w[pred[cand]]
        return out


class SizeBalancedBvSB(ClassBalancedBvSB):
    """Kim et al. (ICCV 2023): like ``classbal`` but the class weight is exp(-P_c) with P_c
    the pixel share (not the region share) of regions predicted c."""

    name = "sizebal"

    def class_weights(
        self, pred: torch.Tensor, size: torch.Tensor, num_classes: int
    ) -> torch.Tensor:
        return sizebal_weights(pred, size, num_classes)


class PixelBalancedBvSB(Strategy):
    """MulActSeg (Hwang et al., NeurIPS 2023), two passes over the pool.

    Pass 0: pi_c = mean over images of the spatial mean of softmax(raw / T) (every output,
    void included); w_c = (1 + delta pi_c) ** -2, handed to pass 1 as the context
    ``class_weights``. Pass 1: region mean of BvSB(raw / T) x w[top-1 class of the pixel].
    With ``void_class`` set (the model's extra void output), regions whose majority top-1
    prediction is void score 0. T = 0.1 applies to the raw cosine of MulActSeg's head.
    """

    name = "pixbal"
    passes = 2

    def __init__(
        self,
        delta: float = 6.0,
        temperature: float = 0.1,
        void_class: int | None = None,
        power: float | None = None,
    ) -> None:
        super().__init__(power)
        if delta < 0 or temperature <= 0:
            raise ValueError(f"delta={delta} must be >= 0 and temperature={temperature} > 0")
        self.delta, self.temperature, self.void_class = delta, temperature, void_class

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        logits = batch.scaled_logits(self.temperature)
        if batch.pass_index == 0:
            probs = torch.softmax(logits.float(), dim=1)
            return RegionStats(images={"mean_probs": probs.mean(dim=(2, 3))})  # (B, C)
        weights = batch.context["class_weights"]
        pixel = S.bvsb(logits)
        top1 = logits.argmax(dim=1)
        w = weights.to(logits.device)[top1]
        score = region_reduce(pixel * w, batch.regions, batch.num_regions, "mean")
        if self.void_class is not None:
            major = region_majority(top1, batch.regions, batch.num_regions, logits.shape[1])
            score = torch.where(major == self.void_class, torch.zeros_like(score), score)
        return RegionStats(score=score)

    def end_pass(self, index: int, stats: PoolStats) -> Stats:
        per_image = stats.images["mean_probs"][stats.image_scored]  # (N, C)
        return {"class_weights": pixbal_weights(per_image.mean(0), self.delta)}


class RIPUStrategy(Strategy):
    """Region impurity x prediction uncertainty (RIPU, CVPR 2022).

    impurity = entropy of the predicted-class histogram in the region / log C;
    uncertainty = mean pixel entropy in the region / log C. With window regions
    (``regions.method=grid regions.cell=2k+1``) a region is a (2k+1)^2 window of RIPU; the
    non-overlapping tiling plays the role of RIPU's suppression radius 2k.

    ``per_image`` (default, as RIPU's code): every image gets its share of the round's
    budget in proportion to its pixels (RIPU: ceil(H W ratio / (2k+1)^2) windows per
    image), the remainder going to the images whose next region scores highest, and takes
    its best regions; otherwise the best regions of the whole pool.
    """

    name = "ripu"

    def __init__(self, per_image: bool = True, power: float | None = None) -> None:
        super().__init__(power)
        self.per_image = per_image

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        logits, n = batch.logits, batch.num_regions
        C = logits.shape[1]
        counts = region_class_counts(logits.argmax(1), batch.regions, n, C)
        impurity = normalized_entropy(counts)
        uncertainty = region_reduce(S.entropy(logits, normalize=True), batch.regions, n, "mean")
        out = RegionStats(
            score=impurity * uncertainty,
            regions={"impurity": impurity, "uncertainty": uncertainty},
        )
        if batch.images is not None:
            out.regions["image"] = batch.images
            out.regions["size"] = torch.bincount(batch.regions.reshape(-1), minlength=n)
        return out

    def select(
        self,
        scores: torch.Tensor,
        stats: PoolStats,
        ctx: SelectionContext,
    ) -> Selection:
        if not self.per_image or "image" not in stats.regions:
            return super().select(scores, stats, ctx)
        return Selection(per_image_topk(scores, ctx.costs, ctx.labeled, ctx.budget, stats))


def per_image_topk(
    scores: torch.Tensor,
    costs: torch.Tensor,
    labeled: torch.Tensor,
    budget: float,
    stats: PoolStats,
) -> torch.Tensor:
    """Split ``budget`` over the scored images in proportion to their pixels, labeled ones
    included (floor), give
    the rest one share at a time to the images whose next region scores highest, then take
    each image's best regions while their cost fits its share (vectorised: one sort).

    Returns:
        (K,) long global ids, grouped by image, each image's by descending score.
    """
    all_scored = stats.scored.cpu()
    ids = (all_scored & ~labeled.cpu()).nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ValueError("the pool is empty: every region is already labeled")
    image = stats.regions["image"].cpu().long()
    img = image[ids]
    s = scores.cpu().float().nan_to_num(nan=float("-inf"))[ids]
    c = costs.cpu().double()[ids]
    num = int(image[all_scored].max()) + 1
    # each image's share follows its whole area, labeled pixels included, as RIPU's
    # ceil(H W ratio / window) (core/active/build.py)
    every = all_scored.nonzero().squeeze(1)
    px = torch.zeros(num, dtype=torch.float64).index_add_(
        0, image[every], stats.regions["size"].cpu()[every].double()
    )
    share = torch.floor(budget * px / px.sum())
    by_score = torch.argsort(s, descending=True, stable=True)
    order = by_score[torch.argsort(img[by_score], stable=True)]  # by image, best first
    img, s, c, ids = img[order], s[order], c[order], ids[order]
    start = torch.zeros(num, dtype=torch.float64)
    cum = torch.cumsum(c, 0)
    first = torch.ones_like(img, dtype=torch.bool)
    first[1:] = img[1:] != img[:-1]
    start[img[first]] = (cum - c)[first]
    spent_in_image = cum - start[img]  # cost of an image's regions up to this one

    def taken() -> torch.Tensor:  # a prefix of each image's regions
        return spent_in_image <= share[img] + 1e-9

    left = int((budget - float(c[taken()].sum())) // float(c.min()))
    if left > 0:  # the rest: images whose first region left out scores highest
        keep = taken()
        prev_kept = torch.cat([torch.zeros(1, dtype=torch.bool), keep[:-1]])
        head = ~keep & (first | prev_kept)  # each image's first region left out
        nxt = torch.full((num,), float("-inf"))
        nxt[img[head]] = s[head]
        best = torch.argsort(nxt, descending=True, stable=True)[:left]
        share[best[nxt[best] > float("-inf")]] += float(c.max())
    return ids[taken()]
