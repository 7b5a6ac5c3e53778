"""Named strategies = pixel score + region reduction + selection.

A strategy is used in steps, so that the pool is streamed (``passes`` times) and only
region-level tensors are kept:

1. ``region_stats(batch)`` for each batch of the pool: reduces the batch's outputs to
   per-region statistics (keys without prefix, (n, ...)), per-image statistics
   (``image/`` keys, (B, ...)) or candidate features (``cand/key`` (n,) + ``cand/feat``
   (n, D): the scorer keeps the ``max_candidates`` rows of largest key), on the outputs'
   device.
2. ``end_pass(index, stats)`` between passes (e.g. class weights from a first pass).
3. ``scores(stats, labeled, generator)``: (R,) region scores, larger = more informative;
   then ``select(scores, costs, labeled, budget, stats, generator)``.

Strategies are registered in the one explicit dict ``STRATEGIES``; ``get_strategy``
builds one by name with keyword parameters (``active.strategy_params``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from alseg.acquisition import scores as S
from alseg.acquisition.reduce import (
    classbal_weights,
    minmax_normalize,
    normalized_entropy,
    pixbal_weights,
    region_class_counts,
    region_feature_mean,
    region_gradient_embedding,
    region_majority,
    region_reduce,
    sizebal_weights,
)
from alseg.acquisition.select import budgeted_topk, kcenter_greedy, kmeanspp_select, power_keys

Stats = dict[str, torch.Tensor]


@dataclass
class BatchOutputs:
    """One pool batch as a strategy sees it.

    Attributes:
        logits: (B, C, H, W), or (B, C, H, W, T) with T MC-dropout samples.
        regions: (B, H, W) long batch-compact region ids in [0, num_regions).
        num_regions: regions in the batch (n).
        labeled: (n,) bool, regions already labeled.
        ids: (n,) long global ids of the batch's regions.
        features: (B, D, h, w) decoder features, when the strategy asked for them.
        domain: (B, H, W) probability that each pixel is from the source domain (the
            discriminator of a DomainAdaptationModule), when the strategy asked for it.
    """

    logits: torch.Tensor
    regions: torch.Tensor
    num_regions: int
    labeled: torch.Tensor
    ids: torch.Tensor
    features: torch.Tensor | None = None
    domain: torch.Tensor | None = None


class Strategy:
    """Base class. Subclasses set the class attributes that the scorer reads.

    Args:
        power: if set, stochastic power sampling (exponent beta = power) replaces
            deterministic top-k for this strategy's scores.
    """

    name = "base"
    requires_model = True
    passes = 1  # pool passes per selection
    mc_samples = 1  # forward passes with dropout on (BALD)
    needs_features = False  # decoder features in BatchOutputs
    needs_domain = False  # domain-discriminator probabilities in BatchOutputs
    max_candidates = 0  # rows of cand/ buffers kept (diversity strategies)

    def __init__(self, power: float | None = None) -> None:
        if power is not None and power <= 0:
            raise ValueError(f"power={power} must be > 0 (the exponent beta of power sampling)")
        self.power = power

    def region_stats(self, batch: BatchOutputs) -> Stats:
        raise NotImplementedError

    def end_pass(self, index: int, stats: Stats) -> None:
        """Called between passes with the statistics of pass ``index``."""

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Region stats over the pool -> (R,) scores. ``labeled`` (R,) bool."""
        return stats["score"]

    def select(
        self,
        scores: torch.Tensor,
        costs: torch.Tensor,
        labeled: torch.Tensor,
        budget: float,
        stats: Stats,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """(R,) scores and costs -> (K,) selected global region ids."""
        if self.power is not None:
            scores = power_keys(scores, self.power, generator)
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

    def __init__(self, score: str, temperature: float = 1.0, power: float | None = None) -> None:
        super().__init__(power)
        if score not in S.PIXEL_SCORES:
            raise ValueError(f"score={score!r} is not valid; choose one of {list(S.PIXEL_SCORES)}")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.name = score
        self._fn: Callable[..., torch.Tensor] = S.PIXEL_SCORES[score]
        self.temperature = temperature

    def region_stats(self, batch: BatchOutputs) -> Stats:
        pixel = self._fn(batch.logits, temperature=self.temperature)  # (B, H, W)
        return {"score": region_reduce(pixel, batch.regions, batch.num_regions, "mean")}


class BALDStrategy(Strategy):
    """Region mean of BALD over ``mc_samples`` MC-dropout passes (dropout layers only are
    switched on at scoring time; batch norm stays in eval mode)."""

    name = "bald"

    def __init__(self, mc_samples: int = 8, power: float | None = None) -> None:
        super().__init__(power)
        if mc_samples < 2:
            raise ValueError(f"mc_samples={mc_samples} must be >= 2 for BALD")
        self.mc_samples = mc_samples

    def region_stats(self, batch: BatchOutputs) -> Stats:
        if batch.logits.dim() != 5:
            raise ValueError("bald needs MC samples: logits (B, C, H, W, T)")
        pixel = S.bald(batch.logits)  # (B, H, W)
        return {"score": region_reduce(pixel, batch.regions, batch.num_regions, "mean")}


class ClassBalancedBvSB(Strategy):
    """Cai et al. (CVPR 2021, METHODS.md C): min-max normalised mean BvSB of the region
    x exp(-share of candidate regions whose predicted dominant class is that of the region)."""

    name = "classbal"

    def __init__(self, temperature: float = 1.0, power: float | None = None) -> None:
        super().__init__(power)
        self.temperature = temperature

    def region_stats(self, batch: BatchOutputs) -> Stats:
        pixel = S.bvsb(batch.logits, temperature=self.temperature)
        pred = batch.logits.argmax(dim=1)  # (B, H, W)
        n = batch.num_regions
        return {
            "bvsb": region_reduce(pixel, batch.regions, n, "mean"),
            "pred": region_majority(pred, batch.regions, n, batch.logits.shape[1]),
            "size": torch.bincount(batch.regions.reshape(-1), minlength=n),
        }

    def class_weights(
        self, pred: torch.Tensor, size: torch.Tensor, num_classes: int
    ) -> torch.Tensor:
        return classbal_weights(pred, num_classes)

    def candidates(self, stats: Stats, labeled: torch.Tensor) -> torch.Tensor:
        """(R,) bool regions that may be selected (scored, not labeled)."""
        return ~labeled & stats["scored"].to(labeled.device)

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        bvsb, pred = stats["bvsb"], stats["pred"].long()
        cand = self.candidates(stats, labeled.to(bvsb.device))
        out = torch.full_like(bvsb, float("nan"))
        if cand.any():
            w = self.class_weights(pred[cand], stats["size"][cand], int(pred.max()) + 1)
            out[cand] = minmax_normalize(bvsb[cand]) * w[pred[cand]]
        return out


class SizeBalancedBvSB(ClassBalancedBvSB):
    """Kim et al. (ICCV 2023, METHODS.md B): like ``classbal`` but the class weight is
    exp(-P_c) with P_c the pixel share (not the region share) of regions predicted c."""

    name = "sizebal"

    def class_weights(
        self, pred: torch.Tensor, size: torch.Tensor, num_classes: int
    ) -> torch.Tensor:
        return sizebal_weights(pred, size, num_classes)


class PixelBalancedBvSB(Strategy):
    """MulActSeg (Hwang et al., NeurIPS 2023, METHODS.md A), two passes over the pool.

    Pass 1: pi_c = mean over images of the spatial mean of softmax(logits / T);
    w_c = (1 + delta pi_c) ** -2. Pass 2: region mean of BvSB(T) x w[top-1 class of the
    pixel]. With ``void_class`` set (the model's extra void output), regions whose majority
    top-1 prediction is void score 0, and void is left out of pi.
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
        self.weights: torch.Tensor | None = None
        self._pass = 0

    def region_stats(self, batch: BatchOutputs) -> Stats:
        logits = batch.logits
        if self._pass == 0:
            probs = torch.softmax(logits.float() / self.temperature, dim=1)
            return {"image/mean_probs": probs.mean(dim=(2, 3))}  # (B, C)
        assert self.weights is not None
        pixel = S.bvsb(logits, temperature=self.temperature)
        top1 = logits.argmax(dim=1)
        w = self.weights.to(logits.device)[top1]
        score = region_reduce(pixel * w, batch.regions, batch.num_regions, "mean")
        if self.void_class is not None:
            major = region_majority(top1, batch.regions, batch.num_regions, logits.shape[1])
            score = torch.where(major == self.void_class, torch.zeros_like(score), score)
        return {"score": score}

    def end_pass(self, index: int, stats: Stats) -> None:
        if index == 0:
            per_image = stats["image/mean_probs"][stats["image/scored"]]  # (N, C)
            pi = per_image.mean(0)
            w = pixbal_weights(pi, self.delta)
            if self.void_class is not None:
                w[self.void_class] = 1.0
            self.weights = w
            self._pass = 1

    def scores(
        self, stats: Stats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        self._pass = 0  # ready for the next round
        return stats["score"]


class RIPUStrategy(Strategy):
    """Region impurity x prediction uncertainty (RIPU, CVPR 2022, METHODS.md D).

    impurity = entropy of the predicted-class histogram in the region / log C;
    uncertainty = mean pixel entropy in the region / log C. With window regions
    (``regions.method=grid regions.cell=2k+1``) a region is a (2k+1)^2 window of RIPU; the
    non-overlapping tiling plays the role of RIPU's suppression radius 2k.
    """

    name = "ripu"

    def region_stats(self, batch: BatchOutputs) -> Stats:
        logits, n = batch.logits, batch.num_regions
        C = logits.shape[1]
        counts = region_class_counts(logits.argmax(1), batch.regions, n, C)
        impurity = normalized_entropy(counts)
        uncertainty = region_reduce(S.entropy(logits, normalize=True), batch.regions, n, "mean")
        return {"score": impurity * uncertainty, "impurity": impurity, "uncertainty": uncertainty}


def hash_key(ids: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random key per global region id (Knuth's multiplicative hash)."""
    return ((ids * 2654435761) % 2**32).float()


class _DiversityStrategy(Strategy):
    """Shared parts of coreset and BADGE. Features are kept for at most ``max_candidates``
    unlabeled regions (the most uncertain: largest mean entropy) and, for coreset, as many
    labeled regions as centers (a pseudo-random subset by id hash), so memory never grows
    with the pool."""

    needs_features = True
    uses_centers = False

    def __init__(self, max_candidates: int = 50_000, block: int = 4096) -> None:
        super().__init__(None)
        if max_candidates < 1:
            raise ValueError(f"max_candidates={max_candidates} must be >= 1")
        self.max_candidates, self.block = max_candidates, block

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        raise NotImplementedError

    def region_stats(self, batch: BatchOutputs) -> Stats:
        ent = region_reduce(S.entropy(batch.logits), batch.regions, batch.num_regions, "mean")
        feat = self.embed(batch)
        out = {
            "score": ent,
            "cand/key": torch.where(batch.labeled, torch.full_like(ent, -math.inf), ent),
            "cand/feat": feat,
        }
        if self.uses_centers:  # a fixed pseudo-random subset of the labeled regions
            h = hash_key(batch.ids)
            out["center/key"] = torch.where(batch.labeled, h, torch.full_like(h, -math.inf))
            out["center/feat"] = feat
        return out

    def select(
        self,
        scores: torch.Tensor,
        costs: torch.Tensor,
        labeled: torch.Tensor,
        budget: float,
        stats: Stats,
        generator: torch.Generator,
    ) -> torch.Tensor:
        keep = stats["cand/ids"] >= 0
        ids, feat = stats["cand/ids"][keep], stats["cand/feat"][keep]
        c = costs.to(ids.device)[ids]
        if float(c.sum()) < budget:
            raise ValueError(
                f"{self.name}: the {ids.numel()} candidate regions cost {float(c.sum()):g} clicks, "
                f"less than the budget {budget:g}; raise active.strategy_params.max_candidates"
            )
        lab = torch.zeros(ids.numel(), dtype=torch.bool, device=ids.device)
        if self.uses_centers and "center/ids" in stats:
            ck = stats["center/ids"] >= 0
            feat = torch.cat([feat, stats["center/feat"][ck]])
            c = torch.cat([c, costs.to(ids.device)[stats["center/ids"][ck]]])
            lab = torch.cat([lab, torch.ones(int(ck.sum()), dtype=torch.bool, device=ids.device)])
        local = self.pick(feat, c, budget, lab, generator)
        return ids[local].cpu()

    def pick(
        self,
        feat: torch.Tensor,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        raise NotImplementedError


class CoresetStrategy(_DiversityStrategy):
    """Core-set (Sener & Savarese, 2018): k-center greedy on region features (mean decoder
    features over the region), with labeled regions as the initial centers."""

    name = "coreset"
    uses_centers = True

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        assert batch.features is not None
        return region_feature_mean(batch.features, batch.regions, batch.num_regions)

    def pick(
        self,
        feat: torch.Tensor,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return kcenter_greedy(feat, costs, budget, labeled, self.block)


class BADGEStrategy(_DiversityStrategy):
    """BADGE (Ash et al., 2020): k-means++ seeding on region gradient embeddings."""

    name = "badge"

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        assert batch.features is not None
        probs = torch.softmax(batch.logits.float(), dim=1)
        return region_gradient_embedding(probs, batch.features, batch.regions, batch.num_regions)

    def pick(
        self,
        feat: torch.Tensor,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        return kmeanspp_select(feat, costs, budget, labeled, generator, self.block)


def _pixel(score: str) -> Callable[..., Strategy]:
    return lambda **kw: PixelScoreStrategy(score, **kw)


def _domain(name: str) -> Callable[..., Strategy]:
    def build(**params: object) -> Strategy:
        from alseg.acquisition import domain  # it imports this module

        cls = {"aada": domain.AADAStrategy, "clue": domain.CLUEStrategy}
        cls.update(eada=domain.EADAStrategy, lamda=domain.LAMDAStrategy)
        return cls[name](**params)

    return build


def _adaptive_sizebal(**params: object) -> Strategy:
    from alseg.acquisition.adaptive import AdaptiveSizeBalancedBvSB  # it imports this module

    return AdaptiveSizeBalancedBvSB(**params)  # type: ignore[arg-type]


def _powerbald(mc_samples: int = 8, power: float = 1.0) -> Strategy:
    s = BALDStrategy(mc_samples, power)
    s.name = "powerbald"
    return s


STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy,
    "entropy": _pixel("entropy"),
    "margin": _pixel("margin"),
    "bvsb": _pixel("bvsb"),
    "least_confidence": _pixel("least_confidence"),
    "bald": BALDStrategy,
    "powerbald": _powerbald,
    "classbal": ClassBalancedBvSB,
    "pixbal": PixelBalancedBvSB,
    "sizebal": SizeBalancedBvSB,
    "adaptive_sizebal": _adaptive_sizebal,
    "ripu": RIPUStrategy,
    "coreset": CoresetStrategy,
    "badge": BADGEStrategy,
    "aada": _domain("aada"),
    "clue": _domain("clue"),
    "eada": _domain("eada"),
    "lamda": _domain("lamda"),
}


def get_strategy(name: str, **params: object) -> Strategy:
    """Build the strategy registered as ``name``; unknown names list the valid ones."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid strategies: {', '.join(STRATEGIES)}")
    try:
        return STRATEGIES[name](**params)
    except TypeError as e:
        raise ValueError(f"bad parameters {params} for strategy {name!r}: {e}") from e
