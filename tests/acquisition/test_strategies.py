"""Known answers and reference implementations for the acquisition library."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from alseg.acquisition.base import PoolStats, SelectionContext
from alseg.acquisition.reduce import (
    pixbal_weights,
    region_feature_mean,
    region_gradient_embedding,
    region_reduce,
    sizebal_weights,
)
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.select import budgeted_topk, kcenter_greedy, kmeanspp_select, power_keys
from alseg.acquisition.strategies import get_strategy
from alseg.data.regions import RegionSet
from alseg.models.segmentation import PredictOutputs, SegmentationModule, build_network


def one_image_pool(regions: np.ndarray) -> RegionSet:
    return RegionSet([regions])


def run_scorer(strategy, logits, regions, labeled=None, features=None):
    rs = RegionSet([r.numpy() for r in regions])
    scorer = PoolScorer(strategy, rs.num_regions, rs.offsets, labeled)
    idx = torch.arange(len(regions))
    context = {}
    for p in range(strategy.passes):
        scorer.reset(p, context)
        out = {"logits": logits} if features is None else {"logits": logits, "features": features}
        scorer.update(out, regions, idx)
        stats = scorer.compute()
        if p < strategy.passes - 1:
            context = strategy.end_pass(p, stats)
    return stats


def test_sizebal_weights_use_pixel_mass_not_region_count():
    # two regions of class 0 with 1 pixel each, one region of class 1 with 8 pixels
    w = sizebal_weights(torch.tensor([0, 0, 1]), torch.tensor([1, 1, 8]), 2)
    torch.testing.assert_close(w, torch.tensor([math.exp(-0.2), math.exp(-0.8)]))


def test_pixbal_weights_and_two_pass_scores():
    torch.testing.assert_close(
        pixbal_weights(torch.tensor([0.5, 0.0]), 6.0), torch.tensor([1 / 16, 1.0])
    )
    # image of 2 pixels = 2 regions; logits such that softmax(l / 0.1) is known
    p = torch.tensor([[0.8, 0.2], [0.4, 0.6]])  # pixel x class probabilities at T = 0.1
    logits = (p.log() * 0.1).T.reshape(1, 2, 1, 2)
    regions = torch.tensor([[[0, 1]]])
    stats = run_scorer(get_strategy("pixbal", delta=6.0), logits, regions)
    pi = p.mean(0)  # mean over the image of softmax: [0.6, 0.4]
    w = (1 + 6 * pi) ** -2
    want = torch.tensor([0.2 / 0.8 * w[0], 0.4 / 0.6 * w[1]])
    torch.testing.assert_close(stats.score, want.float(), rtol=1e-4, atol=1e-6)


def test_pixbal_void_majority_scores_zero():
    logits = torch.zeros(1, 3, 1, 4)
    logits[0, 2, 0, :3] = 5.0  # pixels 0-2 predict void (class 2)
    logits[0, 0, 0, 3] = 5.0
    regions = torch.tensor([[[0, 0, 0, 1]]])
    stats = run_scorer(get_strategy("pixbal", void_class=2), logits, regions)
    assert stats.score[0] == 0 and stats.score[1] > 0


def test_ripu_matches_a_hand_computed_window():
    # one 3x3 window (region 0): predictions 6 x class 0 and 3 x class 1, C = 3
    logits = torch.full((1, 3, 3, 3), -5.0)
    logits[0, 0, :2, :] = 1.0  # top two rows -> class 0 (p ~ softmax([1, -5, -5]))
    logits[0, 1, 2, :] = 2.0  # bottom row -> class 1
    regions = torch.zeros(1, 3, 3, dtype=torch.long)
    stats = run_scorer(get_strategy("ripu"), logits, regions)
    impurity = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)) / math.log(3)

    def h(v):
        q = torch.softmax(torch.tensor(v), 0)
        return float(-(q * q.log()).sum()) / math.log(3)

    uncertainty = (6 * h([1.0, -5.0, -5.0]) + 3 * h([-5.0, 2.0, -5.0])) / 9
    assert stats.regions["impurity"][0].item() == pytest.approx(impurity, rel=1e-5)
    assert stats.regions["uncertainty"][0].item() == pytest.approx(uncertainty, rel=1e-5)
    assert stats.score[0].item() == pytest.approx(impurity * uncertainty, rel=1e-5)


def test_power_sampling_frequencies_follow_score_power():
    scores = torch.tensor([1.0, 2.0, 3.0])
    gen = torch.Generator().manual_seed(0)
    counts = np.zeros(3)
    for _ in range(3000):
        counts[int(budgeted_topk(power_keys(scores, 1.0, gen), torch.ones(3), 1)[0])] += 1
    np.testing.assert_allclose(counts / counts.sum(), [1 / 6, 2 / 6, 3 / 6], atol=0.03)
    # a very large beta is deterministic top-k
    keys = power_keys(torch.tensor([0.1, 0.5, 0.3, 0.9]), 1e4, gen)
    assert budgeted_topk(keys, torch.ones(4), 2).tolist() == [3, 1]


def kcenter_reference(x, labeled, k):
    d = torch.cdist(x.double(), x.double())  # the N x N matrix, fine for a test
    centers = labeled.nonzero().squeeze(1).tolist()
    if not centers:
        centers_d = ((x.double() - x.double().mean(0)) ** 2).sum(1).sqrt()
    picks = []
    for _ in range(k):
        md = d[:, centers].min(1).values if centers else centers_d
        md[labeled] = -1
        md[picks] = -1
        i = int(torch.argmax(md))
        picks.append(i)
        centers.append(i)
    return picks


@pytest.mark.parametrize("with_labeled", [True, False])
def test_kcenter_equals_brute_force(with_labeled):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 5, generator=g)
    labeled = torch.zeros(60, dtype=torch.bool)
    if with_labeled:
        labeled[[2, 17, 40]] = True
    got = kcenter_greedy(x, torch.ones(60), 7, labeled, block=16)
    assert got.tolist() == kcenter_reference(x, labeled, 7)


def test_kmeanspp_respects_budget_and_labels():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 4, generator=g)
    x[5] *= 10  # the largest norm is picked first
    labeled = torch.zeros(100, dtype=torch.bool)
    labeled[:3] = True
    costs = torch.full((100,), 2.0)
    picks = kmeanspp_select(x, costs, 13, labeled, torch.Generator().manual_seed(0), block=7)
    assert picks[0] == 5 and len(picks) == 6 and not labeled[picks].any()
    assert picks.unique().numel() == picks.numel()
    again = kmeanspp_select(x, costs, 13, labeled, torch.Generator().manual_seed(0), block=64)
    assert picks.tolist() == again.tolist()  # blocks do not change the result


def test_region_feature_mean_equals_nearest_upsampling():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 4, 5, generator=g)
    regions = torch.randint(0, 6, (2, 8, 10), generator=g)
    up = F.interpolate(feats, size=(8, 10), mode="nearest").permute(0, 2, 3, 1)  # (B, H, W, D)
    want = region_reduce(up, regions, 6, "mean")
    torch.testing.assert_close(region_feature_mean(feats, regions, 6), want)


def test_gradient_embedding_equals_pixel_loop_at_feature_resolution():
    g = torch.Generator().manual_seed(0)
    B, C, D, H, W = 1, 3, 2, 4, 4
    probs = torch.softmax(torch.randn(B, C, H, W, generator=g), 1)
    feats = torch.randn(B, D, H, W, generator=g)  # same resolution: pooling is the identity
    regions = torch.randint(0, 3, (B, H, W), generator=g)
    got = region_gradient_embedding(probs, feats, regions, 3)
    for r in range(3):
        ys, xs = (regions[0] == r).nonzero(as_tuple=True)
        acc = torch.zeros(C, D)
        for y, x in zip(ys.tolist(), xs.tolist()):
            p = probs[0, :, y, x]
            a = p - F.one_hot(p.argmax(), C).float()
            acc += torch.outer(a, feats[0, :, y, x])
        want = acc / max(len(ys), 1)
        torch.testing.assert_close(got[r].view(C, D), want)


def test_candidate_buffer_keeps_most_uncertain_regardless_of_batch_order():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 3, 4, 4, generator=g) * 3
    feats = torch.randn(4, 2, 2, 2, generator=g)
    maps = [torch.randint(0, 4, (4, 4), generator=g) for _ in range(4)]
    maps = [torch.unique(m, return_inverse=True)[1] for m in maps]
    rs = RegionSet([m.numpy() for m in maps])
    strat = get_strategy("badge", max_candidates=5)

    def stats_for(order):
        scorer = PoolScorer(strat, rs.num_regions, rs.offsets)
        for i in order:
            idx = torch.tensor([i])
            scorer.update({"logits": logits[idx], "features": feats[idx]}, maps[i][None], idx)
        return scorer.compute()

    a, b = stats_for([0, 1, 2, 3]), stats_for([3, 1, 0, 2])
    assert a.cand.ids.tolist() == b.cand.ids.tolist()
    top5 = torch.sort(a.score, descending=True, stable=True).indices[:5].sort().values
    assert a.cand.ids.tolist() == top5.tolist()


def test_mc_dropout_only_switches_dropout_layers():
    model = SegmentationModule(build_network("DeepLabV3Plus", "resnet18", None, 4), 4).eval()
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    before = bn.running_mean.clone()
    model.configure_prediction(PredictOutputs(mc_samples=3))
    with torch.no_grad():
        out = model.predict_step({"image": torch.rand(2, 3, 32, 32)}, 0)
    assert out["logits"].shape == (2, 4, 32, 32, 3)
    assert not torch.equal(out["logits"][..., 0], out["logits"][..., 1])  # dropout was on
    assert torch.equal(bn.running_mean, before) and not bn.training  # batch norm untouched
    assert not any(m.training for m in model.modules())  # everything back in eval mode


def test_diversity_needs_enough_candidates():
    strat = get_strategy("coreset", max_candidates=2)
    logits = torch.randn(1, 3, 4, 4)
    regions = torch.arange(4).repeat_interleave(4).view(1, 4, 4)
    stats = run_scorer(strat, logits, regions, features=torch.randn(1, 2, 2, 2))
    with pytest.raises(ValueError, match="raise active.strategy_params.max_candidates"):
        ctx = SelectionContext(
            torch.ones(4), torch.zeros(4, dtype=torch.bool), 3, torch.Generator()
        )
        strat.select(stats.score, stats, ctx)


def test_channels_last_scoring_gives_the_same_logits():
    model = SegmentationModule(build_network("DeepLabV3Plus", "resnet18", None, 4), 4).eval()
    x = {"image": torch.rand(2, 3, 32, 32)}
    with torch.no_grad():
        ref = model.predict_step(x, 0)
        model.configure_prediction(PredictOutputs(channels_last=True))
        out = model.predict_step(x, 0)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "name, params, message",
    [
        ("entropy", {"power": "abc"}, "power='abc' is not valid for strategy 'entropy': a number"),
        (
            "bald",
            {"mc_samples": 2.5},
            "mc_samples=2.5 is not valid for strategy 'bald': an integer",
        ),
        ("ripu", {"per_image": "yes"}, "per_image='yes' is not valid for strategy 'ripu': true or"),
        ("bvsb", {"temprature": 0.1}, "unknown parameter 'temprature' of strategy 'bvsb'; valid"),
    ],
)
def test_bad_strategy_parameters_are_named(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        get_strategy(name, **params)
    get_strategy("entropy", power=2)  # an int is a number
    get_strategy("pixbal", void_class=None, delta=12)


def test_ripu_quota_shares_the_budget_over_all_pixels_of_an_image():
    """RIPU (ripu/utils/..., its per-image loop): each image selects ceil(H W ratio / window)
    regions, a share of its whole area, however much of it is labeled already. Two images
    of 4 equal regions, half of image 0 labeled: a budget of 4 gives 2 regions to each."""
    from alseg.acquisition.uncertainty import per_image_topk

    labeled = torch.tensor([True, True, False, False, False, False, False, False])
    stats = PoolStats(
        regions={"image": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), "size": torch.full((8,), 9)},
        scored=torch.ones(8, dtype=torch.bool),
        image_scored=torch.ones(2, dtype=torch.bool),
    )
    scores = torch.tensor([0.0, 0.0, 0.2, 0.1, 0.9, 0.8, 0.7, 0.6])
    picked = per_image_topk(scores, torch.ones(8), labeled, 4.0, stats)
    assert sorted(picked.tolist()) == [2, 3, 4, 5]
