"""Active domain adaptation strategies (METHODS.md E): AADA, CLUE, EADA and LAMDA.

They select target regions (for classification: images, one region each) like every
other strategy: statistics per pool batch, then a selection under a click budget.
``aada`` needs the domain discriminator of a ``DomainAdaptationModule``; ``clue`` and
``lamda`` need embeddings (decoder features, averaged per region).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from alseg.acquisition import scores as S
from alseg.acquisition.reduce import region_feature_mean, region_reduce
from alseg.acquisition.select import budgeted_topk, lamda_select, weighted_kmeans_select
from alseg.acquisition.strategies import (
    BatchOutputs,
    Stats,
    Strategy,
    _DiversityStrategy,
    hash_key,
)


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
    ) -> torch.Tensor:
        energy = stats["energy"].float().cpu()
        usable = ~labeled & torch.isfinite(energy)
        k = int(budget // float(costs[usable].min())) if usable.any() else 0
        keep = max(k, int(math.ceil(self.energy_ratio * k)))
        energy = energy.masked_fill(~usable, float("-inf"))
        top = torch.topk(energy, min(keep, int(usable.sum()))).indices
        shortlist = torch.full_like(scores, float("nan"))
        shortlist[top] = scores[top]
        return budgeted_topk(shortlist, costs, budget, labeled)


class CLUEStrategy(_DiversityStrategy):
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
        return {"score": ent, "cand/key": key, "cand/feat": torch.cat([emb, ent[:, None]], 1)}

    def pick(
        self,
        feat: torch.Tensor,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        emb, weight = feat[:, :-1], feat[:, -1]
        return weighted_kmeans_select(emb, weight, costs, budget, labeled, generator, self.iters)


class LAMDAStrategy(_DiversityStrategy):
    """LAMDA (Hwang et al., 2022; METHODS.md E): greedy MMD-critic selection on region
    embeddings (``lamda_select``); confident regions (mean p1 - p2 > ``confidence``) and
    labeled ones are free picks (labeled ones are never queried again), at most
    2 x round x k free picks. After the selection, ``target_distribution`` estimates the
    target label distribution from the labels so far and this round's free picks.

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
        self.round = 1  # set by the loop: the free-pick cap grows with it
        self.classes = 0
        self.free_probs: np.ndarray | None = None  # (F, C) mean softmax of the last free picks

    def region_stats(self, batch: BatchOutputs) -> Stats:
        assert batch.features is not None
        n = batch.num_regions
        self.classes = batch.logits.shape[1]  # splits the candidate rows in pick()
        prob = torch.softmax(batch.logits.float(), 1).movedim(1, -1)
        top2 = prob.topk(2, dim=-1).values
        margin = region_reduce(top2[..., 0] - top2[..., 1], batch.regions, n)
        mean_prob = region_reduce(prob, batch.regions, n)
        emb = region_feature_mean(batch.features, batch.regions, n)
        feat = torch.cat([emb, mean_prob, margin[:, None]], 1)
        h = hash_key(batch.ids)
        inf = torch.full_like(h, -math.inf)
        return {
            "score": -margin,
            "cand/key": torch.where(batch.labeled, inf, h),
            "cand/feat": feat,
            "center/key": torch.where(batch.labeled, h, inf),
            "center/feat": feat,
        }

    def pick(
        self,
        feat: torch.Tensor,
        costs: torch.Tensor,
        budget: float,
        labeled: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        C = self.classes
        emb, prob, margin = feat[:, : -C - 1], feat[:, -C - 1 : -1], feat[:, -1]
        free = margin > self.confidence
        unlabeled_costs = costs[~labeled]
        k = min(int(budget // float(unlabeled_costs.min())), int((~labeled).sum()))
        queries, free_picks = lamda_select(emb, free, labeled, k, 2 * self.round * k, self.gamma)
        spent = torch.cumsum(costs[queries].double(), 0)
        queries = queries[spent <= budget + 1e-9]
        self.free_probs = prob[free_picks].cpu().numpy()
        return queries

    def target_distribution(self, label_counts: np.ndarray) -> np.ndarray:
        """p_t(c) proportional to 1 + labels so far of class c + the top-1 probabilities of
        this round's free picks for class c (METHODS.md E, step 5)."""
        p = 1.0 + np.asarray(label_counts, dtype=np.float64)
        if self.free_probs is not None and len(self.free_probs):
            top = self.free_probs.argmax(1)
            np.add.at(p, top, self.free_probs.max(1))
        return p / p.sum()
