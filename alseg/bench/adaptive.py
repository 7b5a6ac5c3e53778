"""``alseg bench adaptive``: merging one 1024x2048 map of ~8,192 base regions (adjacency +
merge) vs a straightforward BFS with scipy's ``jensenshannon`` on the same data."""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
import torch

from alseg.acquisition.adaptive import merge_regions
from alseg.bench.acquisition import voronoi_regions
from alseg.bench.common import emit, timed
from alseg.data.regions import region_adjacency


def reference_merge(
    regions: np.ndarray, probs: np.ndarray, unc: np.ndarray, eps: float
) -> list[int]:
    """Per-pixel adjacency and per-pair scipy JS: the obvious implementation."""
    from scipy.spatial.distance import jensenshannon

    R = probs.shape[0]
    adj: list[set[int]] = [set() for _ in range(R)]
    a, b = regions[:, :-1].ravel(), regions[:, 1:].ravel()
    c, d = regions[:-1, :].ravel(), regions[1:, :].ravel()
    for u, v in zip(np.concatenate([a, c]).tolist(), np.concatenate([b, d]).tolist()):
        if u != v:
            adj[u].add(v)
            adj[v].add(u)
    label = [-1] * R
    m = 0
    for s in sorted(range(R), key=lambda i: (-unc[i], i)):
        if label[s] >= 0:
            continue
        label[s] = m
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in sorted(adj[u]):
                if label[v] < 0 and jensenshannon(probs[s], probs[v]) < eps:
                    label[v] = m
                    queue.append(v)
        m += 1
    return label


def synthetic_predictions(
    num_regions: int, classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean softmax per region drawn around a few class prototypes (so merges happen)."""
    g = torch.Generator().manual_seed(seed)
    proto = torch.randint(0, classes, (num_regions,), generator=g)
    logits = torch.nn.functional.one_hot(proto, classes).float() * 4
    probs = torch.softmax(logits + 0.3 * torch.randn(num_regions, classes, generator=g), 1)
    top = probs.topk(2, 1).values
    return probs, top[:, 1] / top[:, 0]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="alseg bench adaptive")
    p.add_argument("--quick", action="store_true")
    a = p.parse_args(argv)
    h, w, n = (256, 512, 1024) if a.quick else (1024, 2048, 8192)
    regions = voronoi_regions(h, w, n)
    R = int(regions.max()) + 1
    probs, unc = synthetic_predictions(R, 19)

    def ours() -> torch.Tensor:
        return merge_regions(region_adjacency(regions), probs, unc, 0.1)

    t_ours, labels = timed(ours, repeat=3)
    t_ref, ref = timed(
        lambda: reference_merge(regions.numpy(), probs.double().numpy(), unc.double().numpy(), 0.1)
    )
    assert labels.tolist() == ref, "merge_regions disagrees with the reference"
    return emit(
        "merge_regions",
        image=f"{h}x{w}",
        base_regions=R,
        merged_regions=int(labels.max()) + 1,
        seconds=round(t_ours, 3),
        reference_seconds=round(t_ref, 2),
        ratio=round(t_ref / t_ours, 1),
    )
