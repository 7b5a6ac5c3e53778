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
    assert knee_threshold(np.linspace(0, 1, 500)) == float("-inf")
    assert knee_threshold(np.linspace(0, 1, 500) ** 3) == float("-inf")
    assert knee_threshold(np.full(100, 0.7)) == float("-inf")
