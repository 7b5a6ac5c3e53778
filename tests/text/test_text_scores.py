"""Text data-filtering scores: known answers from the papers' formulas and official code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from alseg.text.scores import (
    adam_gradient,
    band_keep,
    ifd,
    ifd_keep,
    less_scores,
    mean_token_loss,
    perplexity,
    rademacher,
    semdedup,
    token_el2n,
)


def test_mean_token_loss_counts_only_response_tokens():
    loss = torch.tensor([[9.0, 1.0, 3.0], [9.0, 9.0, 2.0]])
    mask = torch.tensor([[0, 1, 1], [0, 0, 1]], dtype=torch.bool)
    assert mean_token_loss(loss, mask).tolist() == [2.0, 2.0]
    assert perplexity(torch.tensor([math.log(4.0)])).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match=r"examples \[1\] have no scored token"):
        mean_token_loss(loss, torch.tensor([[1, 1, 1], [0, 0, 0]], dtype=torch.bool))


def test_band_keep_low_middle_high():
    s = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0])
    assert band_keep(s, 0.4, "low").tolist() == [1, 3]
    assert band_keep(s, 0.4, "high").tolist() == [0, 2]
    assert band_keep(s, 0.4, "middle").tolist() == [3, 4]  # ascending 1,2,3,4,5: drop 1 | 5
    with pytest.raises(ValueError, match="band='top' is not valid; choose one of: low"):
        band_keep(s, 0.4, "top")


def test_ifd_is_the_ratio_of_mean_losses_and_keeps_the_highest_at_most_one():
    # the paper's worked example (App. F): s(A) = 0.761, s(A|Q) = 0.696 -> 0.915
    assert ifd(torch.tensor(0.696), torch.tensor(0.761)).item() == pytest.approx(0.9146, abs=1e-4)
    cond = torch.tensor([0.696, 1.2, 0.5, float("nan"), 0.9])
    alone = torch.tensor([0.761, 1.0, 1.0, 1.0, 1.0])
    score = ifd(cond, alone)
    # IFD > 1 (index 1) and undefined (3) go; of 3 survivors int(3 x 0.7) = 2 highest stay
    assert ifd_keep(score, 0.7).tolist() == [0, 4]
    assert ifd_keep(score, 1.0).tolist() == [0, 2, 4]


def test_token_el2n_by_hand():
    probs = torch.tensor([[[0.5, 0.5], [1.0, 0.0]]])
    target = torch.tensor([[0, 0]])
    mask = torch.tensor([[1, 1]], dtype=torch.bool)
    assert token_el2n(probs, target, mask).item() == pytest.approx((math.sqrt(0.5) + 0) / 2)


def test_semdedup_removes_the_later_of_a_near_pair_in_the_farthest_first_order():
    emb = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.0, 1.0], [0.0, -1.0]])
    cluster = torch.tensor([0, 0, 0, 0, 1])
    centroids = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    # cluster 0 by distance to [1, 0]: item 3 (1.0), items 1, 2 (0.4, tie: index), item 0 (0)
    assert semdedup(emb, cluster, centroids, eps=0.01).tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
    # eps = 0.5: cos > 0.5 removes too: 1 (0.8 to item 3), 2, and 0 (0.6 to item 1)
    assert semdedup(emb, cluster, centroids, eps=0.5).tolist() == [True, True, True, False, False]


def test_semdedup_matches_a_loop_over_pairs():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(60, 4, generator=g)
    emb[30:40] = emb[:10] + 0.01 * torch.randn(10, 4, generator=g)  # near duplicates
    cluster = torch.randint(0, 3, (60,), generator=g)
    centroids = torch.randn(3, 4, generator=g)
    x, c = F.normalize(emb, dim=1), F.normalize(centroids, dim=1)
    expected = [False] * 60
    for k in range(3):
        items = [i for i in range(60) if cluster[i] == k]
        items.sort(key=lambda i: (-(1 - float(x[i] @ c[k])), i))
        for j, b in enumerate(items):
            expected[b] = any(float(x[a] @ x[b]) > 1 - 0.05 for a in items[:j])
    assert semdedup(emb, cluster, centroids, 0.05).tolist() == expected


def test_adam_gradient_is_one_moment_update_without_bias_correction():
    out = adam_gradient(torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert out.item() == pytest.approx(0.2 / math.sqrt(0.004 + 1e-8))
    out = adam_gradient(torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.25]))
    m, v = 0.9 * 0.5 + 0.1 * 1.0, 0.999 * 0.25 + 0.001 * 1.0
    assert out.item() == pytest.approx(m / math.sqrt(v + 1e-8))


def test_rademacher_projection_is_fixed_and_keeps_norms():
    p = rademacher(64, 2048, seed=0)
    assert torch.equal(p, rademacher(64, 2048, seed=0))
    assert torch.allclose(p.abs(), torch.full_like(p, 1 / math.sqrt(2048)))
    x = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    ratio = (x @ p).norm(dim=1) / x.norm(dim=1)
    assert torch.all((ratio > 0.9) & (ratio < 1.1))


def test_less_scores_by_hand():
    train = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    val = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    task = torch.tensor([0, 0, 1])
    s = 1 / math.sqrt(2)
    # cosines: train 0 -> (1, 0, s), train 1 -> (0, 1, s); task 0 means 0.5, task 1 s
    assert less_scores([train], [val], [1.0], task).tolist() == pytest.approx([s, s])
    # two checkpoints weighted 3 : 1; the second flips train 0 against every validation row
    out = less_scores([train, -train], [val, val], [3.0, 1.0], task)
    assert out.tolist() == pytest.approx([0.5 * s, 0.5 * s])
    with pytest.raises(ValueError, match="one entry per checkpoint"):
        less_scores([train], [val, val], [1.0], task)
