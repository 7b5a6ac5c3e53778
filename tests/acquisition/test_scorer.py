import numpy as np
import pytest
import torch

from alseg.acquisition.reduce import region_reduce
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.scores import entropy
from alseg.acquisition.strategies import STRATEGIES, get_strategy
from alseg.data.regions import RegionSet


def pool(n=5, h=6, w=7, c=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    maps = [
        torch.randint(0, int(k), (h, w), generator=g).numpy()
        for k in torch.randint(2, 6, (n,), generator=g)
    ]
    maps = [np.unique(m, return_inverse=True)[1].reshape(h, w) for m in maps]
    logits = torch.randn(n, c, h, w, generator=g)
    return RegionSet(maps), logits


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_streamed_scores_equal_per_image_reduction(batch):
    rs, logits = pool()
    scorer = PoolScorer(get_strategy("entropy"), rs.num_regions, rs.offsets)
    order = [3, 0, 4, 1, 2]  # any order of images
    for s in range(0, len(order), batch):
        idx = torch.tensor(order[s : s + batch])
        regions = torch.stack([rs.map_tensor(int(i)) for i in idx])
        scorer.update(logits[idx], regions, idx)
    stats = scorer.compute()
    want = torch.cat(
        [
            region_reduce(entropy(logits[i : i + 1])[0], rs.map_tensor(i), int(rs.num_regions[i]))
            for i in range(5)
        ]
    )
    torch.testing.assert_close(stats.score, want)
    assert stats.scored.all()


def test_unscored_regions_are_nan():
    rs, logits = pool()
    scorer = PoolScorer(get_strategy("bvsb"), rs.num_regions, rs.offsets)
    scorer.update(logits[:1], rs.map_tensor(0)[None], torch.tensor([0]))
    stats = scorer.compute()
    n0 = int(rs.num_regions[0])
    assert stats.scored[:n0].all() and not stats.scored[n0:].any()
    assert stats.score[n0:].isnan().all()
    with pytest.raises(RuntimeError, match="pool was empty"):
        PoolScorer(get_strategy("bvsb"), rs.num_regions, rs.offsets).compute()


def test_classbal_prefers_rare_predicted_class():
    # one pixel per region; regions 0, 1 predict class 0, region 2 predicts class 1.
    # Region 0 is the most uncertain, but region 2's rare class lifts it to the top.
    logits = torch.tensor([[1.0, 2.0, 0.45], [0.5, 0.0, 1.0]]).view(1, 2, 1, 3)
    rs = RegionSet([np.array([[0, 1, 2]])])
    strat = get_strategy("classbal")
    scorer = PoolScorer(strat, rs.num_regions, rs.offsets)
    scorer.update(logits, rs.map_tensor(0)[None], torch.tensor([0]))
    s = strat.scores(scorer.compute(), torch.zeros(3, dtype=torch.bool), torch.Generator())
    bvsb = torch.tensor([np.exp(-0.5), np.exp(-2.0), np.exp(-0.55)]).float()  # p2 / p1
    norm = (bvsb - bvsb.min()) / (bvsb.max() - bvsb.min())
    w = torch.exp(-torch.tensor([2 / 3, 2 / 3, 1 / 3]))  # exp(-share of regions)
    torch.testing.assert_close(s, norm * w)
    assert s.argmax().item() == 2 and bvsb.argmax().item() == 0


def test_unknown_strategy_lists_valid_names():
    with pytest.raises(ValueError, match="valid strategies: random, entropy"):
        get_strategy("nope")
    assert {"random", "entropy", "margin", "bvsb", "least_confidence", "classbal"} <= set(
        STRATEGIES
    )


def test_pool_stats_keep_each_kind_of_statistic_apart():
    """Per-region, per-image and row statistics land in their own fields at pool size."""
    rs, logits = pool()
    strat = get_strategy("lamda", max_candidates=4)
    scorer = PoolScorer(strat, rs.num_regions, rs.offsets)
    feats = torch.randn(5, 3, 6, 7, generator=torch.Generator().manual_seed(1))
    for i in range(5):
        idx = torch.tensor([i])
        out = {"logits": logits[idx], "features": feats[idx], "backbone": feats[idx]}
        scorer.update(out, rs.map_tensor(i)[None], idx)
    stats = scorer.compute()
    assert stats.score.shape == stats.pred.shape == stats.scored.shape == (rs.total,)
    assert stats.root is None and stats.regions == {} and stats.images == {}
    assert set(stats.groups()) == {"cand", "center"}
    assert stats.cand.key.shape == stats.cand.ids.shape == (4,)
    assert set(stats.cand.fields) == {"feat", "prob", "margin"}
    assert stats.cand.fields["feat"].shape == (4, 3)
    # nothing labeled: no centers, every center row empty
    assert (stats.center.ids == -1).all() and (stats.cand.ids >= 0).all()


def test_region_stats_refuse_a_named_statistic_among_the_others():
    from alseg.acquisition.base import RegionStats

    stats = RegionStats(score=torch.zeros(2), regions={"score": torch.ones(2)})
    with pytest.raises(ValueError, match=r"must not repeat the named statistics \['score'\]"):
        stats.per_region()


def test_a_strategy_without_a_score_says_so():
    from alseg.acquisition.base import PoolStats

    stats = PoolStats(scored=torch.ones(2, dtype=torch.bool), image_scored=torch.ones(1))
    with pytest.raises(ValueError, match="entropy: region_stats set no score"):
        get_strategy("entropy").scores(stats, torch.zeros(2, dtype=torch.bool), torch.Generator())
