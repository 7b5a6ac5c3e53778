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
    Selection,
    Stats,
    Strategy,
    hash_key,
)
from alseg.acquisition.reduce import region_feature_mean, region_reduce
from alseg.acquisition.select import budgeted_topk, lamda_select, weighted_kmeans_select


class AADAStrategy(Strategy):
    """AADA (Su et al., 2020): mean over the region of w(x) x entropy(x), with the
    importance weight w = (1 - D(x)) / D(x) and D(x) the discriminator's probability that
    x comes from the source domain."""

    name = "aada"
    needs_domain = True

    def region_stats(self, batch: BatchOutputs) -> Stats:
        if batch.domain is None:
            raise ValueError("aada needs a domain discriminator: use adaptation.alignment=dann")
        d = batch.domain.clamp(1e-4, 1 - 1e-4)
        score = (1 - d) / d * S.entropy(batch.logits)
        return {"score": region_reduce(score, batch.regions, batch.num_regions, "mean")}


class EADAStrategy(Strategy):
    """EADA (Xie et al., 2022): free energy F = -T logsumexp(f / T) per pixel, averaged per
    region; the ``energy_ratio`` x k regions of highest energy are kept, then the k with the
    smallest gap between the two lowest class energies (= top-two logit margin)."""

    name = "eada"

    def __init__(self, temperature: float = 1.0, energy_ratio: float = 10.0) -> None:
        super().__init__(None)
        if energy_ratio < 1:
            raise ValueError(f"energy_ratio={energy_ratio} must be >= 1")
        self.temperature, self.energy_ratio = temperature, energy_ratio

    def region_stats(self, batch: BatchOutputs) -> Stats:
        f = batch.logits.float()
        energy = -self.temperature * torch.logsumexp(f / self.temperature, dim=1)
        top2 = f.topk(2, dim=1).values
        gap = top2[:, 0] - top2[:, 1]
        n = batch.num_regions
        return {
            "energy": region_reduce(energy, batch.regions, n, "mean"),
            "score": -region_reduce(gap, batch.regions, n, "mean"),  # small gap first
        }

    def select(
        self,
        scores: torch.Tensor,
        costs: torch.Tensor,
        labeled: torch.Tensor,
        budget: float,
        stats: Stats,
        generator: torch.Generator,
        round_index: int = 1,
    ) -> Selection:
        energy = stats["energy"].float().cpu()
        usable = ~labeled & torch.isfinite(energy)
        k = int(budget // float(costs[usable].min())) if usable.any() else 0
        keep = max(k, int(math.ceil(self.energy_ratio * k)))
        energy = energy.masked_fill(~usable, float("-inf"))
        top = torch.topk(energy, min(keep, int(usable.sum()))).indices
        shortlist = torch.full_like(scores, float("nan"))
        shortlist[top] = scores[top]
        return Selection(budgeted_topk(shortlist, costs, budget, labeled))


class CLUEStrategy(DiversityStrategy):
    """CLUE (Prabhu et al., 2021): k-means of region embeddings weighted by the entropy of
    softmax(logits / T), K = the budget's queries, the sample nearest to each centroid.
    Candidates: a fixed pseudo-random subset of ``max_candidates`` unlabeled regions."""

    name = "clue"

    def __init__(
        self, temperature: float = 0.1, max_candidates: int = 50_000, iters: int = 10
    ) -> None:
        super().__init__(max_candidates)
        self.temperature, self.iters = temperature, iters

    def region_stats(self, batch: BatchOutputs) -> Stats:
        assert batch.features is not None
        n = batch.num_regions
        ent = region_reduce(S.entropy(batch.logits, temperature=self.temperature), batch.regions, n)
        emb = region_feature_mean(batch.features, batch.regions, n)
        key = torch.where(batch.labeled, torch.full_like(ent, -math.inf), hash_key(batch.ids))
        return {"score": ent, "cand/key": key, "cand/feat": emb, "cand/weight": ent}

    def pick(
        self,
        fields: Stats,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
        round_index: int,
    ) -> Selection:
        emb, weight = fields["feat"], fields["weight"]
        return Selection(
            weighted_kmeans_select(emb, weight, costs, budget, labeled, generator, self.iters)
        )


class LAMDAStrategy(DiversityStrategy):
    """LAMDA (Hwang et al., ECCV 2022): greedy MMD-critic selection on region embeddings
    (``lamda_select``); confident regions (mean p1 - p2 > ``confidence``) and labeled ones
    are free picks (labeled ones are never queried again), at most 2 x round x k free
    picks. The selection's extras carry the free picks (``free_ids``) and their mean
    softmax (``free_probs``), from which ``alseg.extensions.label_matching`` estimates the
    target label distribution.

    Candidates: a fixed pseudo-random subset of ``max_candidates`` unlabeled regions plus
    as many labeled ones, so the MMD sees the whole pool's distribution.
    """

    name = "lamda"
    uses_centers = True

    def __init__(
        self, confidence: float = 0.8, gamma: float | None = None, max_candidates: int = 50_000
    ) -> None:
        super().__init__(max_candidates)
        self.confidence, self.gamma = confidence, gamma

    def region_stats(self, batch: BatchOutputs) -> Stats:
        assert batch.features is not None
        n = batch.num_regions
        gap = 1.0 - S.margin(batch.logits)  # p1 - p2
        margin = region_reduce(gap, batch.regions, n)
        mean_prob = region_reduce(
            torch.softmax(batch.logits.float(), 1).movedim(1, -1), batch.regions, n
        )
        emb = region_feature_mean(batch.features, batch.regions, n)
        h = hash_key(batch.ids)
        inf = torch.full_like(h, -math.inf)
        out = {"score": -margin}
        for group, key in (
            ("cand", torch.where(batch.labeled, inf, h)),
            ("center", torch.where(batch.labeled, h, inf)),
        ):
            out.update(
                {
                    f"{group}/key": key,
                    f"{group}/feat": emb,
                    f"{group}/prob": mean_prob,
                    f"{group}/margin": margin,
                }
            )
        return out

    def pick(
        self,
        fields: Stats,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
        round_index: int,
    ) -> Selection:
        free = fields["margin"] > self.confidence
        unlabeled_costs = costs[~labeled]
        k = min(int(budget // float(unlabeled_costs.min())), int((~labeled).sum()))
        cap = 2 * round_index * k
        queries, free_picks = lamda_select(fields["feat"], free, labeled, k, cap, self.gamma)
        spent = torch.cumsum(costs[queries].double(), 0)
        queries = queries[spent <= budget + 1e-9]
        extras = {
            "free_rows": free_picks.cpu().numpy(),
            "free_probs": fields["prob"][free_picks].cpu().numpy(),
        }
        return Selection(queries, extras)
