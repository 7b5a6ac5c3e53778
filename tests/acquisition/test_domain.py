"""Active domain adaptation strategies: AADA, EADA, CLUE (known answers)."""

from __future__ import annotations

import torch
from helpers import whole_pool

from alseg.acquisition.base import SelectionContext
from alseg.acquisition.domain import AADAStrategy, EADAStrategy
from alseg.acquisition.select import weighted_kmeans_select
from alseg.acquisition.strategies import BatchOutputs


def test_aada_is_the_region_mean_of_weighted_entropy():
    logits = torch.zeros(1, 2, 1, 2)  # uniform: entropy log 2 everywhere
    domain = torch.tensor([[[0.5, 0.2]]])  # P(source): weights 1 and 4
    regions = torch.tensor([[[0, 0]]])
    batch = BatchOutputs(logits, regions, 1, torch.zeros(1, dtype=torch.bool), torch.arange(1))
    batch.domain = domain
    score = AADAStrategy().region_stats(batch).score
    assert torch.allclose(score, torch.tensor([(1 + 4) / 2 * torch.log(torch.tensor(2.0))]))


def test_eada_keeps_high_energy_then_small_gap():
    # 4 regions: energies (-logsumexp) and top-2 gaps chosen by hand
    logits = torch.tensor([[5.0, 0.0], [5.0, 4.9], [1.0, 0.0], [1.0, 0.9]]).T.reshape(1, 2, 1, 4)
    regions = torch.arange(4).reshape(1, 1, 4)
    s = EADAStrategy(first_ratio=0.5)  # half of the 4 regions: the 2 of highest energy
    stats = whole_pool(
        s.region_stats(
            BatchOutputs(logits, regions, 4, torch.zeros(4, dtype=torch.bool), torch.arange(4))
        )
    )
    labeled = torch.zeros(4, dtype=torch.bool)
    scores = s.scores(stats, labeled, torch.Generator())
    picked = s.select(
        scores, stats, SelectionContext(torch.ones(4), labeled, 1.0, torch.Generator())
    )
    # highest energies: regions 2, 3 (small logits); of those the smaller gap: 3
    assert picked.ids.tolist() == [3]


def test_clue_takes_one_sample_per_cluster():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(20, 2, generator=g) for c in centers])
    weights = torch.ones(60)
    labeled = torch.zeros(60, dtype=torch.bool)
    picks = weighted_kmeans_select(x, weights, torch.ones(60), 3.0, labeled, g)
    assert sorted((p // 20) for p in picks.tolist()) == [0, 1, 2]
    labeled[:20] = True  # never picks labeled samples
    picks = weighted_kmeans_select(x, weights, torch.ones(60), 3.0, labeled, g)
    assert picks.numel() == 3 and (picks >= 20).all()
