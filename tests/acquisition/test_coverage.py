"""TypiClust and ProbCover on toy embeddings, with answers from the official formulas; the
strategies within the budget; strategy schedules."""

from __future__ import annotations

import pytest
import torch

from alseg.acquisition.base import RandomStrategy, SelectionContext
from alseg.acquisition.coverage import (
    ProbCoverStrategy,
    TypiClustStrategy,
    ball_purity,
    kmeans,
    probcover_order,
    purity_radius,
    typicality,
    typiclust_order,
)
from alseg.acquisition.strategies import build_schedule


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_typicality_is_the_inverse_mean_squared_distance_to_the_k_nearest():
    x = torch.tensor([[0.0], [1.0], [3.0]])
    # k = 1: squared distances to the nearest other point: 1, 1, 4
    expected = 1 / (torch.tensor([1.0, 1.0, 4.0]) + 1e-5)
    torch.testing.assert_close(typicality(x, 1), expected)
    # k = 2: (1 + 9) / 2, (1 + 4) / 2, (9 + 4) / 2
    torch.testing.assert_close(typicality(x, 2), 1 / (torch.tensor([5.0, 2.5, 6.5]) + 1e-5))


def blobs() -> tuple[torch.Tensor, list[int], list[int], list[int]]:
    """Blob A: 6 core points near (0, 0) and a hexagon of radius 1 around them; blob B: the
    same at (20, 0) with a core of 4; blob C: 4 points at (0, 20) (a cluster too small)."""
    g = gen(1)
    hexagon = torch.stack(
        [torch.tensor([torch.cos(t), torch.sin(t)]) for t in torch.arange(6) * torch.pi / 3]
    )
    a_core = torch.randn(6, 2, generator=g) * 1e-3
    b_core = torch.randn(4, 2, generator=g) * 1e-3 + torch.tensor([20.0, 0.0])
    c = torch.randn(4, 2, generator=g) * 1e-3 + torch.tensor([0.0, 20.0])
    x = torch.cat([a_core, hexagon, b_core, hexagon + torch.tensor([20.0, 0.0]), c])
    return x, list(range(6)), list(range(12, 16)), list(range(22, 26))


def test_typiclust_picks_the_dense_core_of_the_largest_unlabeled_clusters():
    x, a_core, b_core, c = blobs()
    none = torch.zeros(len(x), dtype=torch.bool)
    picks = typiclust_order(x, none, 2, gen())
    # k = 2 clusters: A (12 points) first, B (10); the most typical point is a core point
    assert picks[0] in a_core and picks[1] in b_core
    # a labeled point in A: B, with none labeled, comes first
    labeled = none.clone()
    labeled[7] = True
    picks = typiclust_order(x, labeled, 2, gen())
    assert picks[0] in b_core and picks[1] in a_core and 7 not in picks
    # k = 3: C has 4 points (<= the minimum cluster size 5) and is skipped: A, B, A
    picks = typiclust_order(x, none, 3, gen())
    assert picks[0] in a_core and picks[1] in b_core and picks[2] in a_core
    assert not set(picks) & set(c)
    # 26 clusters of 26 points are all too small: the picks follow global typicality
    picks = typiclust_order(x, none, 26, gen())
    assert picks == typicality(x, 13).argsort(descending=True).tolist()


def test_probcover_greedy_coverage_known_answer():
    x = torch.tensor([[0.0], [0.1], [0.2], [5.0], [5.1], [10.0]])
    none = torch.zeros(6, dtype=torch.bool)
    # delta 0.15: 0.1 reaches 0, 0.1, 0.2 (3); then 5 and 5.1 reach 2 each (tie: the
    # first), then 10 reaches itself
    assert probcover_order(x, none, 0.15, 3, gen()) == [1, 3, 5]
    labeled = none.clone()
    labeled[4] = True  # 5.1 covers 5 and itself already
    assert probcover_order(x, labeled, 0.15, 2, gen()) == [1, 5]
    # everything covered: the rest are random unlabeled rows, each once
    rest = probcover_order(x, none, 0.15, 6, gen())
    assert rest[:3] == [1, 3, 5] and sorted(rest) == list(range(6))


def test_purity_radius_is_the_largest_pure_radius():
    g = gen(2)
    a = torch.randn(30, 2, generator=g) * 0.01
    b = torch.randn(30, 2, generator=g) * 0.01 + torch.tensor([0.6, 0.0])
    x = torch.cat([a, b])
    pseudo = kmeans(x, 2, gen())
    assert set(pseudo[:30].tolist()) != set(pseudo[30:].tolist())  # the two blobs
    assert ball_purity(x, pseudo, 0.5) == 1.0 and ball_purity(x, pseudo, 0.65) < 0.95
    # balls reach the other blob once delta exceeds its distance (~0.56-0.64)
    assert purity_radius(x, 2, gen()) in (0.55, 0.6)
    assert purity_radius(x, 2, gen(), grid=(0.1, 0.2, 0.3)) == 0.3


@pytest.mark.parametrize("cls", [TypiClustStrategy, ProbCoverStrategy])
def test_coverage_strategies_spend_within_budget_and_repeat(cls):
    x, *_ = blobs()
    n = len(x)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[3] = True
    costs = torch.ones(n)
    costs[::3] = 2.0
    s = cls(embedding="model", max_candidates=100)
    fields = {"feat": torch.nn.functional.normalize(x + 0.5, dim=1)}
    sel = s.pick(fields, SelectionContext(costs, labeled, 7.0, gen()))
    ids = sel.ids.tolist()
    assert ids and float(costs[sel.ids].sum()) <= 7.0 and 3 not in ids
    assert len(set(ids)) == len(ids)
    assert s.pick(fields, SelectionContext(costs, labeled, 7.0, gen())).ids.tolist() == ids


def test_schedules_map_rounds_and_refuse_what_cannot_run():
    one = build_schedule("bvsb", {"temperature": 0.5})
    assert isinstance(one.at(0), RandomStrategy) and one.at(3).name == "bvsb"
    assert one.name == "bvsb"
    two = build_schedule(["typiclust", "bvsb"], {"typiclust": {"k_nn": 5}, "power": 2.0})
    assert two.at(0).power is None  # a shared key goes to the strategies that take it
    assert [two.at(r).name for r in range(4)] == ["typiclust", "bvsb", "bvsb", "bvsb"]
    assert two.at(0).k_nn == 5 and two.at(1).power == 2.0 and two.name == "typiclust+bvsb"
    with pytest.raises(ValueError, match=r"active.strategy\[0\]=bvsb would choose round 0"):
        build_schedule(["bvsb", "entropy"], {})
    with pytest.raises(ValueError, match="unknown parameter 'delta': no strategy of"):
        build_schedule(["typiclust", "bvsb"], {"delta": 0.5})
    with pytest.raises(ValueError, match="unknown parameter 'delta' of strategy 'bvsb'"):
        build_schedule(["typiclust", "bvsb"], {"bvsb": {"delta": 0.5}})
