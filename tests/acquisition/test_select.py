import numpy as np
import pytest
import torch

from alseg.acquisition.select import budgeted_topk


def test_descending_with_ties_by_lower_id():
    scores = torch.tensor([0.5, 0.9, 0.5, 0.1, 0.9])
    ids = budgeted_topk(scores, torch.ones(5), 4)
    assert ids.tolist() == [1, 4, 0, 2]


def test_never_selects_labeled_and_stops_when_budget_is_spent():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    costs = torch.tensor([1.0, 2.0, 2.0, 1.0])
    labeled = torch.tensor([True, False, False, False])
    assert budgeted_topk(scores, costs, 4, labeled).tolist() == [1, 2]
    assert budgeted_topk(scores, costs, 3, labeled).tolist() == [1]


def test_nan_scores_rank_last():
    ids = budgeted_topk(torch.tensor([float("nan"), 0.2, 0.1]), torch.ones(3), 3)
    assert ids.tolist() == [1, 2, 0]


def test_budget_never_exceeded_random_property():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(5, 200))
        scores = torch.tensor(rng.random(n))
        costs = torch.tensor(rng.integers(1, 5, n).astype(float))
        labeled = torch.tensor(rng.random(n) < 0.3)
        pool = float(costs[~labeled].sum())
        if pool == 0:
            continue
        budget = float(rng.uniform(0.5, pool))
        ids = budgeted_topk(scores, costs, budget, labeled)
        assert float(costs[ids].sum()) <= budget
        assert not labeled[ids].any()
        assert ids.unique().numel() == ids.numel()
        # greedy prefix: nothing better-scored was skipped
        rest = torch.ones(n, dtype=torch.bool)
        rest[ids] = False
        rest &= ~labeled
        if ids.numel() and rest.any():
            assert scores[rest].max() <= scores[ids].min()


def test_errors():
    s, c = torch.ones(3), torch.ones(3)
    with pytest.raises(ValueError, match="larger than the whole unlabeled pool"):
        budgeted_topk(s, c, 4)
    with pytest.raises(ValueError, match="pool is empty"):
        budgeted_topk(s, c, 1, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="budget=0"):
        budgeted_topk(s, c, 0)
    with pytest.raises(ValueError, match="cost must be > 0"):
        budgeted_topk(s, torch.tensor([1.0, 0.0, 1.0]), 1)
