"""Diversity strategies on region features: core-set (k-center greedy) and BADGE.

Both choose among the feature rows that ``DiversityStrategy`` keeps bounded (the most
uncertain unlabeled regions, plus labeled centers for core-set), with one running distance
vector: memory O(N x block), never N x N.
"""

from __future__ import annotations

import torch

from alseg.acquisition.base import (
    BatchOutputs,
    DiversityStrategy,
    Selection,
    SelectionContext,
    Stats,
)
from alseg.acquisition.reduce import region_feature_mean, region_gradient_embedding
from alseg.acquisition.select import kcenter_greedy, kmeanspp_select


class CoresetStrategy(DiversityStrategy):
    """Core-set (Sener & Savarese, 2018): k-center greedy on region features (mean decoder
    features over the region), with labeled regions as the initial centers."""

    name = "coreset"
    uses_centers = True

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        assert batch.features is not None
        return region_feature_mean(batch.features, batch.regions, batch.num_regions)

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        return Selection(
            kcenter_greedy(fields["feat"], ctx.costs, ctx.budget, ctx.labeled, self.block)
        )


class BADGEStrategy(DiversityStrategy):
    """BADGE (Ash et al., 2020): k-means++ seeding on region gradient embeddings."""

    name = "badge"

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        assert batch.features is not None
        probs = torch.softmax(batch.logits.float(), dim=1)
        return region_gradient_embedding(probs, batch.features, batch.regions, batch.num_regions)

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        feat, g = fields["feat"], ctx.generator
        return Selection(kmeanspp_select(feat, ctx.costs, ctx.budget, ctx.labeled, g, self.block))
