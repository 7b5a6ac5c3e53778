"""Adaptive superpixels: adjacency, merging and the knee sieve against references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon

from alseg.acquisition.adaptive import js_distance, knee_threshold, merge_regions
from alseg.bench.adaptive import adjacency_loop, reference_merge
from alseg.data.regions import region_adjacency, slic_regions
from alseg.data.synthetic import SyntheticScenes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_region_adjacency_equals_pixel_loop(seed):
    rng = np.random.default_rng(seed)
    regions = rng.integers(0, 12, (9, 13))
    got = region_adjacency(torch.from_numpy(regions))
    assert [tuple(p) for p in got.tolist()] == adjacency_loop(regions)  # unique, a < b, sorted


def test_js_distance_matches_scipy():
    rng = np.random.default_rng(0)
    p, q = rng.dirichlet(np.ones(5), 20), rng.dirichlet(np.ones(5), 20)
    want = [jensenshannon(a, b) for a, b in zip(p, q)]
    np.testing.assert_allclose(js_distance(p, q), want, atol=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_merge_equals_bfs_reference_on_random_graphs(seed):
    rng = np.random.default_rng(seed)
    R, C = 60, 4
    edges = {tuple(sorted(e)) for e in rng.integers(0, R, (150, 2)).tolist() if e[0] != e[1]}
    edges = np.array(sorted(edges))
    # few distinct prediction prototypes + noise, so that chains of merges happen
    protos = rng.dirichlet(np.ones(C) * 0.3, 3)
    probs = protos[rng.integers(0, 3, R)] + rng.uniform(0, 0.05, (R, C))
    probs /= probs.sum(1, keepdims=True)
    unc = rng.integers(0, 10, R).astype(float)  # many ties: lower id first
    got = merge_regions(
        torch.from_numpy(edges), torch.from_numpy(probs), torch.from_numpy(unc), 0.1
    )
    assert got.tolist() == reference_merge(edges, probs, unc, 0.1)
    assert got.max() + 1 < R  # some regions did merge


def test_merge_equals_reference_on_real_region_maps():
    ds = SyntheticScenes("train", 2, 48)
    for i in range(2):
        regions = slic_regions(ds.image_uint8(i), 40, 10.0)
        R = int(regions.max()) + 1
        edges = region_adjacency(torch.from_numpy(regions).long())
        # "predictions" = the ground-truth class histogram of each region, smoothed
        mask = ds.mask(i).numpy().copy()
        mask[mask == 255] = 8
        hist = np.zeros((R, 9))
        np.add.at(hist, (regions.ravel(), mask.ravel()), 1)
        probs = (hist + 0.5) / (hist + 0.5).sum(1, keepdims=True)
        unc = 1 - probs.max(1)
        got = merge_regions(edges, torch.from_numpy(probs), torch.from_numpy(unc), 0.1)
        assert got.tolist() == reference_merge(edges.numpy(), probs, unc, 0.1)
        seeds_first = [
            int(np.flatnonzero(got.numpy() == m).min()) for m in range(int(got.max()) + 1)
        ]
        assert len(seeds_first) == int(got.max()) + 1  # ids are 0..M-1, none skipped


def test_knee_on_constructed_curves():
    # concave increasing: most confidences high, a tail of low (probably wrong) ones
    low = np.linspace(0.05, 0.3, 200)
    high = 0.9 + 0.1 * np.linspace(0, 1, 800) ** 0.5
    knee = knee_threshold(np.concatenate([high, low]))
    assert 0.3 <= knee <= 0.95
    kept = np.concatenate([high, low]) >= knee
    assert kept[:800].mean() > 0.9 and kept[800:].mean() < 0.1
    # a straight line or a convex curve has no knee: keep everything
    for flat in (np.linspace(0, 1, 500), np.linspace(0, 1, 500) ** 3, np.full(100, 0.7)):
        assert (flat >= knee_threshold(flat)).all()


def official_knee(conf: np.ndarray, step: int = 20) -> float:
    """The adaptive-superpixel code's sieve value, written out: sort, every
    int(n / step)-th value, kneed's first knee (S=1, concave, increasing), else the first."""
    from kneed import KneeLocator

    y = np.sort(conf)[:: max(1, int(len(conf) / step))]
    k = KneeLocator(np.arange(len(y)), y, S=1, curve="concave", direction="increasing").knee
    return float(y[k if k is not None else 0])


def test_knee_equals_the_official_first_knee_on_realistic_curves():
    rng = np.random.default_rng(0)
    for _ in range(50):  # a region's confidences for its answer: mostly right, a wrong tail
        n = int(rng.integers(512, 4000))
        wrong = rng.uniform(0.02, 0.4, int(n * rng.uniform(0.05, 0.4)))
        right = rng.beta(rng.uniform(2, 8), 1.0, n - len(wrong))
        conf = np.concatenate([right, wrong])
        assert knee_threshold(conf) == official_knee(conf)


def test_first_knee_is_not_the_largest_gap_to_the_diagonal():
    # two bends: kneed takes the first (the earlier rule, the largest y - x, took the second)
    y = np.concatenate([np.linspace(0, 0.5, 5), np.linspace(0.52, 0.6, 5), np.linspace(0.6, 1, 3)])
    y = np.concatenate([y, np.full(8, 1.0)])
    conf = np.repeat(y, 50)
    x = np.linspace(0, 1, len(y))
    largest_gap = float(y[np.argmax((y - y[0]) / (y[-1] - y[0]) - x)])
    assert knee_threshold(conf) == official_knee(conf) != largest_gap


def test_batched_adjacency_never_joins_images():
    a = torch.tensor([[0, 1], [0, 1]])
    batch = torch.stack([a, a + 2])  # image 2 holds ids 2, 3
    assert region_adjacency(batch).tolist() == [[0, 1], [2, 3]]


@pytest.mark.parametrize("seed", [0, 1])
def test_merge_roots_is_the_first_visited_member(seed):
    from alseg.acquisition.adaptive import merge_roots

    rng = np.random.default_rng(seed)
    unc = torch.from_numpy(rng.integers(0, 4, 30).astype(np.float64))  # many ties
    label = torch.from_numpy(rng.integers(0, 6, 30))
    label = torch.unique(label, return_inverse=True)[1]
    roots = merge_roots(label, unc)
    for m, r in enumerate(roots.tolist()):
        members = [i for i in range(30) if label[i] == m]
        best = min(members, key=lambda i: (-float(unc[i]), i))
        assert r == best


def _batch(logits, regions, labeled=None):
    from alseg.acquisition.strategies import BatchOutputs

    n = int(regions.max()) + 1
    lab = torch.zeros(n, dtype=torch.bool) if labeled is None else labeled
    return BatchOutputs(logits, regions, n, lab, torch.arange(n) + 100)


def test_adaptive_stats_merge_within_images_and_reduce_over_merged_pixels():
    from alseg.acquisition import scores as S
    from alseg.acquisition.adaptive import AdaptiveSizeBalancedBvSB

    torch.manual_seed(0)
    # two 4x8 images; left half of each is confidently class 0, right half class 1
    base = torch.arange(8).reshape(1, 8).expand(4, 8) // 2  # 4 column stripes per image
    regions = torch.stack([base, base + 4])  # batch-compact ids 0..7
    logits = torch.zeros(2, 3, 4, 8)
    logits[:, 0, :, :4] = 6.0
    logits[:, 1, :, 4:] = 6.0
    logits += 0.01 * torch.randn_like(logits)
    labeled = torch.zeros(8, dtype=torch.bool)
    labeled[1] = True  # a labeled base region is never merged
    stats = AdaptiveSizeBalancedBvSB(eps=0.1).region_stats(_batch(logits, regions, labeled))
    root = stats.root - 100
    # image 0: {0}, {1} (labeled), {2, 3}; image 1: {4, 5}, {6, 7}
    groups = {tuple(i for i in range(8) if root[i] == r) for r in root.tolist()}
    assert groups == {(0,), (1,), (2, 3), (4, 5), (6, 7)}
    is_root = stats.regions["is_root"]
    assert is_root.sum() == 5 and all(root[is_root] == torch.nonzero(is_root)[:, 0])
    # merged statistics = reductions over the merged region's pixels
    pix = S.bvsb(logits)
    for g in groups:
        px = torch.isin(regions, torch.tensor(g))
        for i in g:
            assert stats.regions["bvsb"][i] == pytest.approx(float(pix[px].mean()), rel=1e-5)
            assert stats.regions["size"][i] == int(px.sum())
            assert stats.pred[i] == (0 if i % 4 < 2 else 1)


def test_merged_queries_are_answered_once_over_the_union():
    from alseg.data.labels import NO_CLASS
    from alseg.data.oracle import ClickCost, SimulatedOracle
    from alseg.data.regions import RegionSet

    regions = torch.tensor([[0, 0, 1, 1, 2, 2]]).numpy()
    mask = torch.tensor([[1, 1, 0, 255, 255, 255]])
    oracle = SimulatedOracle(lambda i: mask, RegionSet([regions]), 2, "dominant", ClickCost(1.0))
    root = np.array([1, 1, 2])  # regions 0, 1 merged (root 1); region 2 alone
    ann = oracle.annotate_merged(np.array([1, 2]), root, np.array([0.9, 0.5]))
    assert ann.region_ids.tolist() == [0, 1, 2]
    # union of regions 0 and 1: class 1 x2, class 0 x1, void x1 -> 1 (region 1 alone: tie)
    assert ann.classes.tolist() == [1, 1, NO_CLASS]
    assert ann.costs.tolist() == [0.0, 1.0, 1.0]  # the query's click sits on the root
    assert ann.query.tolist() == [1, 1, 2] and ann.scores.tolist() == [0.9, 0.9, 0.5]


def test_sieve_drops_below_the_knee_in_large_regions_only():
    from alseg.extensions.sieve import SieveConfig, sieve_pixels

    conf = torch.ones(10, 20)
    conf[:, :10] = torch.linspace(0.0, 1.0, 100).reshape(10, 10)  # group 0: a straight line
    knee = torch.cat([torch.linspace(0.0, 0.9, 10), torch.full((90,), 0.95)])
    conf[:, 10:] = knee[torch.randperm(100, generator=torch.Generator().manual_seed(0))].reshape(
        10, 10
    )
    groups = torch.zeros(10, 20, dtype=torch.long)
    groups[:, 10:] = 1
    drop = sieve_pixels(conf, groups, min_pixels=50)
    assert not drop[:, :10].any()  # no knee: keep all
    assert drop[:, 10:].sum() == 10 and (conf[:, 10:][drop[:, 10:]] < 0.95).all()
    assert not sieve_pixels(conf, groups, min_pixels=101).any()  # both groups too small
    cfg = SieveConfig(min_size=512, reference_area=1024 * 2048, min_pixels=20)
    assert cfg.threshold(1024 * 2048) == 512 and cfg.threshold(64 * 64) == 20


def test_sieve_confidence_at_half_resolution_as_the_official_code():
    """build_data_active_sp_am.py: the model predicts the image resized to (w//2, h//2) and
    pixel (y, x) reads softmax_output[(y/2).astype(int), (x/2).astype(int)]."""
    from alseg.extensions.sieve import scaled_confidence

    probs = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 3, 4)  # (C, h, w)
    full = scaled_confidence(probs, (6, 8), 0.5)
    assert full.shape == (2, 6, 8)
    for y in range(6):
        for x in range(8):
            assert torch.equal(full[:, y, x], probs[:, int(y / 2), int(x / 2)])
    assert torch.equal(scaled_confidence(probs, (3, 4), 1.0), probs)
