"""Named strategies = pixel score + region reduction + selection.

A strategy is used in two steps, so that the pool is streamed once and only region-
level tensors are kept:

1. ``region_stats(logits, regions, num_regions)`` for each batch of the pool: reduces the
   batch's logits to per-region statistics (on the logits' device).
2. ``scores(stats, labeled, generator)`` once all batches are in: (R,) region scores,
   larger = more informative; then ``select(scores, costs, labeled, budget)``.

Registered in the one explicit dict ``STRATEGIES``; ``get_strategy`` builds one by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from alseg.acquisition import scores as S
from alseg.acquisition.reduce import (
    classbal_weights,
    minmax_normalize,
    region_majority,
    region_reduce,
)
from alseg.acquisition.select import budgeted_topk

Stats = dict[str, torch.Tensor]


class Strategy:
    """Base class: a pixel-score strategy with mean reduction and budgeted top-k."""

    name = "base"
    requires_model = True

    def region_stats(self, logits: torch.Tensor, regions: torch.Tensor, num_regions: int) -> Stats:
        """logits (B, C, H, W), regions (B, H, W) long in [0, num_regions) -> {name: (R, ...)}."""
        raise NotImplementedError

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Region stats over the pool -> (R,) scores. ``labeled`` (R,) bool."""
        return stats["score"]

    def select(
        self, scores: torch.Tensor, costs: torch.Tensor, labeled: torch.Tensor, budget: float
    ) -> torch.Tensor:
        """(R,) scores and costs -> (K,) selected global region ids."""
        return budgeted_topk(scores, costs, budget, labeled)


class RandomStrategy(Strategy):
    """Uniformly random regions (the round-0 initial set uses it too)."""

    name = "random"
    requires_model = False

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return torch.rand(labeled.shape[0], generator=generator)


class PixelScoreStrategy(Strategy):
    """Mean over each region of a pixel score of ``scores.PIXEL_SCORES``."""

    def __init__(self, score: str, temperature: float = 1.0) -> None:
        if score not in S.PIXEL_SCORES:
            raise ValueError(f"score={score!r} is not valid; choose one of {list(S.PIXEL_SCORES)}")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.name = score
        self._fn: Callable[..., torch.Tensor] = S.PIXEL_SCORES[score]
        self.temperature = temperature

    def region_stats(self, logits: torch.Tensor, regions: torch.Tensor, num_regions: int) -> Stats:
        pixel = self._fn(logits, temperature=self.temperature)  # (B, H, W)
        return {"score": region_reduce(pixel, regions, num_regions, "mean")}


class ClassBalancedBvSB(Strategy):
    """Cai et al. (CVPR 2021, METHODS.md C): min-max normalised mean BvSB of the region
    x exp(-share of candidate regions whose predicted dominant class is that of the region)."""

    name = "classbal"

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def region_stats(self, logits: torch.Tensor, regions: torch.Tensor, num_regions: int) -> Stats:
        pixel = S.bvsb(logits, temperature=self.temperature)
        pred = logits.argmax(dim=1)  # (B, H, W)
        return {
            "bvsb": region_reduce(pixel, regions, num_regions, "mean"),
            "pred": region_majority(pred, regions, num_regions, logits.shape[1]),
        }

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        bvsb, pred = stats["bvsb"], stats["pred"].long()
        cand = ~labeled.to(bvsb.device) & stats["scored"].to(bvsb.device)
        out = torch.full_like(bvsb, float("nan"))
        if cand.any():
            num_classes = int(pred.max()) + 1
            w = classbal_weights(pred[cand], num_classes)
            out[cand] = minmax_normalize(bvsb[cand]) * w[pred[cand]]
        return out


def _pixel(score: str) -> Callable[..., Strategy]:
    return lambda **kw: PixelScoreStrategy(score, **kw)


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy,
    "entropy": _pixel("entropy"),
    "margin": _pixel("margin"),
    "bvsb": _pixel("bvsb"),
    "least_confidence": _pixel("least_confidence"),
    "classbal": ClassBalancedBvSB,
}


def get_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy registered as ``name``; unknown names list the valid ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    try:
        return STRATEGIES[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters {params} for strategy {name!r}: {e}") from e
