"""Active domain adaptation strategies: AADA, CLUE, EADA and LAMDA (docs/methods.md).

They select target regions (for classification: images, one region each) like every
other strategy: statistics per pool batch, then a selection under a click budget.
``aada`` needs the domain discriminator of a ``DomainAdaptationModule``; ``clue`` and
``lamda`` need embeddings (decoder features, averaged per region).
"""

from __future__ import annotations

import math

import torch

from alseg.acquisition import scores as S
from alseg.acquisition.base import (
    BatchOutputs,
    DiversityStrategy,
    PoolStats,
    RegionStats,
    Rows,
    Selection,
    SelectionContext,
    Stats,
    Strategy,
    hash_key,
)
from alseg.acquisition.reduce import region_feature_mean, region_reduce
from alseg.acquisition.select import budgeted_topk, lamda_select, weighted_kmeans_select
from alseg.models.segmentation import PredictOutputs


class AADAStrategy(Strategy):
    """AADA (Su et al., 2020): mean over the region of w(x) x entropy(x), with the
    importance weight w = (1 - D(x)) / D(x) and D(x) the discriminator's probability that
    x comes from the source domain."""

    name = "aada"
    needs_domain = True

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        if batch.domain is None:
            raise ValueError("aada needs a domain discriminator: use adaptation.alignment=dann")
        d = batch.domain.clamp(1e-4, 1 - 1e-4)
        score = (1 - d) / d * S.entropy(batch.logits)
        return RegionStats(score=region_reduce(score, batch.regions, batch.num_regions, "mean"))


class EADAStrategy(Strategy):
    """EADA (Xie et al., 2022): free energy F = -beta logsumexp(f / beta) of the model's
    logits f per pixel, averaged per region; the ``first_ratio`` share of the unlabeled
    regions of highest energy is kept (the official FIRST_SAMPLE_RATIO, 0.5), then the
    regions with the smallest gap between the two lowest class energies (= top-two logit
    margin) fill the budget."""

    name = "eada"

    def __init__(self, energy_beta: float = 1.0, first_ratio: float = 0.5) -> None:
        super().__init__(None)
        if not 0 < first_ratio <= 1:
            raise ValueError(f"first_ratio={first_ratio} must be in (0, 1]")
        if energy_beta <= 0:
            raise ValueError(f"energy_beta={energy_beta} must be > 0")
        self.energy_beta, self.first_ratio = energy_beta, first_ratio

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        f, beta = batch.logits.float(), self.energy_beta
        energy = -beta * torch.logsumexp(f / beta, dim=1)
        top2 = f.topk(2, dim=1).values
        gap = top2[:, 0] - top2[:, 1]
        n = batch.num_regions
        return RegionStats(
            score=-region_reduce(gap, batch.regions, n, "mean"),  # small gap first
            regions={"energy": region_reduce(energy, batch.regions, n, "mean")},
        )

    def select(
        self,
        scores: torch.Tensor,
        stats: PoolStats,
        ctx: SelectionContext,
    ) -> Selection:
        costs, labeled, budget = ctx.costs, ctx.labeled, ctx.budget
        energy = stats.regions["energy"].float().cpu()
        usable = ~labeled & torch.isfinite(energy)
        n = int(usable.sum())
        k = int(budget // float(costs[usable].min())) if n else 0
        keep = min(n, max(k, int(math.ceil(self.first_ratio * n))))
        energy = energy.masked_fill(~usable, float("-inf"))
        top = torch.topk(energy, keep).indices
        shortlist = torch.full_like(scores, float("nan"))
        shortlist[top] = scores[top]
        return Selection(budgeted_topk(shortlist, costs, budget, labeled))


class CLUEStrategy(DiversityStrategy):
    """CLUE (Prabhu et al., 2021): k-means of region embeddings weighted by the entropy of
    softmax(raw / T) (T on the classifier's raw scores, 0.1 as CLUE; None: the model's
    logits), K = the budget's queries, the sample nearest to each centroid.
    Candidates: a fixed pseudo-random subset of ``max_candidates`` unlabeled regions."""

    name = "clue"

    def __init__(
        self, temperature: float | None = 0.1, max_candidates: int = 50_000, iters: int = 10
    ) -> None:
        super().__init__(max_candidates)
        self.temperature, self.iters = temperature, iters

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        assert batch.features is not None
        n = batch.num_regions
        ent = region_reduce(S.entropy(batch.scaled_logits(self.temperature)), batch.regions, n)
        emb = region_feature_mean(batch.features, batch.regions, n)
        key = torch.where(batch.labeled, torch.full_like(ent, -math.inf), hash_key(batch.ids))
        return RegionStats(score=ent, cand=Rows(key, {"feat": emb, "weight": ent}))

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        emb, weight, g = fields["feat"], fields["weight"], ctx.generator
        return Selection(
            weighted_kmeans_select(emb, weight, ctx.costs, ctx.budget, ctx.labeled, g, self.iters)
        )


class LAMDAStrategy(DiversityStrategy):
    """LAMDA (Hwang et al., ECCV 2022): greedy MMD-critic selection (``lamda_select``) with
    an RBF kernel on ``kernel_features``: ``backbone`` (the encoder's pooled, un-normalised
    features, as the official code: 2048-d for ResNet-50, gamma = 1/d) or ``embedding``
    (the decoder / bottleneck features). Confident regions (mean p1 - p2 > ``confidence``)
    and labeled ones are free picks (labeled ones are never queried again), at most
    2 x round x k free picks. The selection's extras carry the free picks (``free_ids``)
    and their mean softmax (``free_probs``; zero rows for labeled free picks, which the
    official estimate weighs 0), from which ``alseg.extensions.label_matching`` estimates
    the target label distribution.

    Candidates: a fixed pseudo-random subset of ``max_candidates`` unlabeled regions plus
    as many labeled ones, so the MMD sees the whole pool's distribution.
    """

    name = "lamda"
    uses_centers = True
    KERNEL_FEATURES = ("backbone", "embedding")

    def __init__(
        self,
        confidence: float = 0.8,
        gamma: float | None = None,
        max_candidates: int = 50_000,
        kernel_features: str = "backbone",
    ) -> None:
        super().__init__(max_candidates)
        if kernel_features not in self.KERNEL_FEATURES:
            raise ValueError(
                f"kernel_features={kernel_features!r}: choose one of {self.KERNEL_FEATURES}"
            )
        self.confidence, self.gamma, self.kernel_features = confidence, gamma, kernel_features

    def outputs(self, channels_last: bool = False) -> PredictOutputs:
        backbone = self.kernel_features == "backbone"
        return PredictOutputs(features=not backbone, backbone=backbone, channels_last=channels_last)

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        n = batch.num_regions
        maps = batch.backbone if self.kernel_features == "backbone" else batch.features
        assert maps is not None
        gap = 1.0 - S.margin(batch.logits)  # p1 - p2
        margin = region_reduce(gap, batch.regions, n)
        probs = torch.softmax(batch.logits.float(), 1).movedim(1, -1)
        mean_prob = region_reduce(probs, batch.regions, n)
        emb = region_feature_mean(maps, batch.regions, n)
        h = hash_key(batch.ids)
        inf = torch.full_like(h, -math.inf)
        fields = {"feat": emb, "prob": mean_prob, "margin": margin}
        return RegionStats(
            score=-margin,
            cand=Rows(torch.where(batch.labeled, inf, h), fields),
            center=Rows(torch.where(batch.labeled, h, inf), dict(fields)),
        )

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        costs, labeled, budget = ctx.costs, ctx.labeled, ctx.budget
        free = fields["margin"] > self.confidence
        unlabeled_costs = costs[~labeled]
        k = min(int(budget // float(unlabeled_costs.min())), int((~labeled).sum()))
        cap = 2 * ctx.round_index * k
        queries, free_picks = lamda_select(fields["feat"], free, labeled, k, cap, self.gamma)
        spent = torch.cumsum(costs[queries].double(), 0)
        queries = queries[spent <= budget + 1e-9]
        probs = fields["prob"][free_picks].clone()
        probs[labeled[free_picks]] = 0.0  # labels already bought count once, as labels
        extras = {"free_rows": free_picks.cpu().numpy(), "free_probs": probs.cpu().numpy()}
        return Selection(queries, extras)
