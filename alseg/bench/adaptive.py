"""``alseg bench adaptive``: merging one 1024x2048 map of ~8,192 base regions (adjacency +
merge) vs a straightforward BFS with scipy's ``jensenshannon`` on the same data."""

from __future__ import annotations

import argparse
from collections import deque

import numpy as np
import torch

from alseg.acquisition.adaptive import merge_regions
from alseg.bench.acquisition import square_regions
from alseg.bench.common import emit, timed
from alseg.data.regions import region_adjacency


def adjacency_loop(regions: np.ndarray) -> list[tuple[int, int]]:
    """4-neighbour region pairs (a < b) by a loop over pixels: the obvious implementation."""
    out = set()
    H, W = regions.shape
    for y in range(H):
        for x in range(W):
            for dy, dx in ((0, 1), (1, 0)):
                if y + dy < H and x + dx < W:
                    a, b = int(regions[y, x]), int(regions[y + dy, x + dx])
                    if a != b:
                        out.add((min(a, b), max(a, b)))
    return sorted(out)


def reference_merge(edges: np.ndarray, probs: np.ndarray, unc: np.ndarray, eps: float) -> list[int]:
    """Breadth-first merging with scipy's ``jensenshannon`` per pair, straight from the
    definition in ``merge_regions`` (the reference of its tests and of this benchmark)."""
    from scipy.spatial.distance import jensenshannon

    R = len(probs)
    adj: list[list[int]] = [[] for _ in range(R)]
    for a, b in np.asarray(edges).tolist():
        adj[a].append(b)
        adj[b].append(a)
    label = [-1] * R
    m = 0
    for s in sorted(range(R), key=lambda i: (-unc[i], i)):
        if label[s] >= 0:
            continue
        label[s] = m
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in adj[u]:
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
    regions = square_regions(h, w, n)
    R = int(regions.max()) + 1
    probs, unc = synthetic_predictions(R, 19)

    def ours() -> torch.Tensor:
        return merge_regions(region_adjacency(regions), probs, unc, 0.1)

    t_ours, labels = timed(ours, repeat=3)
    rmap, p64, u64 = regions.numpy(), probs.double().numpy(), unc.double().numpy()
    t_ref, ref = timed(lambda: reference_merge(np.array(adjacency_loop(rmap)), p64, u64, 0.1))
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
