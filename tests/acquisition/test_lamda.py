"""LAMDA's greedy MMD-critic selection against a straightforward full-kernel reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alseg.acquisition.select import lamda_select


def reference(features: np.ndarray, free: np.ndarray, budget: int, gamma: float):
    """The greedy formula with the full N x N kernel (free-pick cap never reached)."""
    d = ((features[:, None, :] - features[None, :, :]) ** 2).sum(-1)
    K = np.exp(-gamma * d)
    N = len(features)
    picked: list[int] = []
    queries, frees = [], []
    while len(queries) < budget:
        best, arg = -np.inf, -1
        for c in range(N):
            if c in picked:
                continue
            s = sum(K[a, c] for a in picked)
            v = 2 / N * K[c].sum() - (2 * s + K[c, c]) / (len(picked) + 1)
            if v > best + 1e-12:
                best, arg = v, c
        picked.append(arg)
        (frees if free[arg] else queries).append(arg)
    return queries, frees


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_reference_without_cap(seed):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(40, 5)).astype(np.float32)
    labeled = rng.random(40) < 0.2
    free = (rng.random(40) < 0.3) | labeled
    q, fp = lamda_select(
        torch.from_numpy(f), torch.from_numpy(free), torch.from_numpy(labeled), 6, 1000, block=7
    )
    rq, rf = reference(f.astype(np.float64), free, 6, 1 / 5)
    assert q.tolist() == rq and fp.tolist() == rf


@pytest.mark.parametrize("seed", [0, 1])
def test_budget_unique_queries_never_labeled_and_cap(seed):
    rng = np.random.default_rng(seed)
    N = 300
    f = torch.from_numpy(rng.normal(size=(N, 8)).astype(np.float32))
    labeled = torch.from_numpy(rng.random(N) < 0.3)
    free = torch.from_numpy(rng.random(N) < 0.6)
    for max_free in (0, 3, 50):
        q, fp = lamda_select(f, free, labeled, 20, max_free, block=64)
        assert q.numel() == 20 and q.unique().numel() == 20
        assert not labeled[q].any()
        assert not set(q.tolist()) & set(fp.tolist())
        # beyond the cap, only labeled samples (never turned into queries) remain free picks
        assert (~labeled[fp]).sum() <= max_free
    # everything free and labeled except 5: all 5 are queried, via the end-of-pool rule
    lab = torch.ones(N, dtype=torch.bool)
    lab[:5] = False
    q, _ = lamda_select(f, torch.ones(N, dtype=torch.bool), lab, 5, 10**6)
    assert sorted(q.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="exceeds the 5 unlabeled"):
        lamda_select(f, free, lab, 6, 10)
