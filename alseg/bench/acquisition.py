"""``alseg bench acquisition``: pool-scoring throughput, selection time and memory.

Figures (one JSON line each):
* ``region_reduce``: pixels/s of the vectorised pixel->region reduction (one scatter) vs
  a per-region Python loop over the same pixel scores, and of end-to-end region scoring
  (entropy + scatter vs per region: gather its logits, entropy, mean), with both ratios;
* ``budgeted_topk``: seconds to select under a budget from 6M regions;
* ``pool_scoring_memory``: peak memory growth of streaming a pool of N and 4N images
  through the PoolScorer (ratio: memory must not grow with the pool);
* ``kcenter`` / ``badge`` / ``lamda``: seconds and peak memory for N = 50,000 x 512
  features (LAMDA: budget = picks, 30% confident samples, free-pick cap 2 x budget).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from alseg.acquisition.reduce import region_reduce
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.scores import entropy
from alseg.acquisition.select import budgeted_topk, kcenter_greedy, kmeanspp_select, lamda_select
from alseg.acquisition.strategies import get_strategy
from alseg.bench.common import emit, in_fresh_process, timed
from alseg.data.regions import grid_regions


def square_regions(h: int, w: int, n: int) -> torch.Tensor:
    """(h, w) long map of about n square cells (``grid_regions``): superpixels of a given
    count, without running SLIC on a large image."""
    cell = max(1, int(round((h * w / n) ** 0.5)))
    return torch.from_numpy(grid_regions(h, w, cell).astype(np.int64))


def bench_region_reduce(h: int, w: int, classes: int, regions: int, device: str) -> dict:
    """Region scoring of one image, vectorised vs per-region Python loops, two ways:
    the reduction alone (same pixel entropies -> region means: scatter vs a mask per
    region) and end to end (logits -> region scores: entropy of the whole image + scatter
    vs, per region, gathering its logits, entropy, mean)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, classes, h, w, generator=g).to(device)
    rmap = square_regions(h, w, regions).to(device)[None]
    n = int(rmap.max()) + 1
    ent = entropy(logits)
    flat_logits = logits[0].reshape(classes, -1)  # (C, P)
    ids = rmap.reshape(-1)
    flat_ent = ent.reshape(-1)

    def reduce_vec() -> torch.Tensor:
        return region_reduce(ent, rmap, n, "mean")

    def reduce_loop() -> torch.Tensor:
        return torch.stack([flat_ent[ids == r].mean() for r in range(n)])

    def score_vec() -> torch.Tensor:
        return region_reduce(entropy(logits), rmap, n, "mean")

    def score_loop() -> torch.Tensor:
        return torch.stack([entropy(flat_logits[:, ids == r].T).mean() for r in range(n)])

    reduce_vec(), score_vec()  # warm-up
    trv, a = timed(reduce_vec, repeat=5)
    trl, b = timed(reduce_loop)
    tsv, c = timed(score_vec, repeat=3)
    tsl, d = timed(score_loop)
    for x, y in ((a, b), (c, d)):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    px = h * w
    return emit(
        "region_reduce",
        device=device,
        image=f"{h}x{w}",
        classes=classes,
        regions=n,
        reduce_vectorised_pixels_per_s=round(px / trv),
        reduce_loop_pixels_per_s=round(px / trl),
        reduce_ratio=round(trl / trv, 1),
        scoring_vectorised_pixels_per_s=round(px / tsv),
        scoring_loop_pixels_per_s=round(px / tsl),
        scoring_ratio=round(tsl / tsv, 1),
    )


def bench_budgeted_topk(n: int, budget: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(n, generator=g).to(device)
    costs = torch.randint(1, 4, (n,), generator=g).float().to(device)
    labeled = (torch.rand(n, generator=g) < 0.1).to(device)
    budgeted_topk(scores, costs, budget, labeled)  # warm-up
    t, ids = timed(lambda: budgeted_topk(scores, costs, budget, labeled), repeat=3)
    return emit(
        "budgeted_topk",
        device=device,
        regions=n,
        budget=budget,
        selected=int(ids.numel()),
        seconds=round(t, 4),
    )


def _score_pool(images: int, h: int, w: int, classes: int, regions: int, batch: int) -> float:
    """Stream a pool of fake model outputs through the PoolScorer (classbal: two stats)."""
    rmap = square_regions(h, w, regions)
    n = int(rmap.max()) + 1
    num = np.full(images, n)
    offsets = np.concatenate([[0], np.cumsum(num)])
    scorer = PoolScorer(get_strategy("classbal"), num, offsets)
    g = torch.Generator().manual_seed(0)
    for s in range(0, images, batch):
        idx = torch.arange(s, min(images, s + batch))
        logits = torch.randn(len(idx), classes, h, w, generator=g)  # the model's output
        scorer.update(logits, rmap.expand(len(idx), h, w), idx)
    stats = scorer.compute()
    return float(stats.regions["bvsb"].nanmean())


def _warm_up_pool(
    images: int, h: int, w: int, classes: int, regions: int, batch: int
) -> tuple[int, ...]:
    """Score a one-batch pool first, so library start-up (thread pools, allocator state)
    is not counted as the pool's memory."""
    _score_pool(batch, h, w, classes, regions, batch)
    return (images, h, w, classes, regions, batch)


_score_pool.setup = _warm_up_pool  # type: ignore[attr-defined]


def bench_pool_memory(images: int, h: int, w: int, classes: int, regions: int, batch: int) -> dict:
    out = {}
    for n in (images, 4 * images):
        seconds, mib, _ = in_fresh_process(_score_pool, n, h, w, classes, regions, batch)
        out[n] = (seconds, mib)
    (t1, m1), (t4, m4) = out[images], out[4 * images]
    return emit(
        "pool_scoring_memory",
        image=f"{h}x{w}",
        classes=classes,
        regions_per_image=regions,
        batch=batch,
        images_N=images,
        peak_mib_N=round(m1, 1),
        peak_mib_4N=round(m4, 1),
        ratio_4N_over_N=round(m4 / max(m1, 1e-9), 3),
        seconds_N=round(t1, 2),
        seconds_4N=round(t4, 2),
    )


def _features(n: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    labeled = torch.zeros(n, dtype=torch.bool)
    labeled[: n // 100] = True
    return x, torch.ones(n), labeled


def _kcenter(n: int, d: int, picks: int) -> int:
    x, c, lab = _features(n, d)
    return int(kcenter_greedy(x, c, picks, lab).numel())


def _badge(n: int, d: int, picks: int) -> int:
    x, c, lab = _features(n, d)
    return int(kmeanspp_select(x, c, picks, lab, torch.Generator().manual_seed(0)).numel())


def _lamda(n: int, d: int, picks: int) -> int:
    x, _, lab = _features(n, d)
    free = torch.rand(n, generator=torch.Generator().manual_seed(1)) < 0.3
    return int(lamda_select(x, free, lab, picks, 2 * picks)[0].numel())


def bench_diversity(n: int, d: int, picks: int) -> list[dict]:
    rows = []
    inputs_mib = n * d * 4 / 2**20
    for name, fn in (("kcenter", _kcenter), ("badge", _badge), ("lamda", _lamda)):
        seconds, mib, k = in_fresh_process(fn, n, d, picks)
        rows.append(
            emit(
                name,
                n=n,
                d=d,
                picks=k,
                seconds=round(seconds, 2),
                peak_mib=round(mib, 1),
                features_mib=round(inputs_mib, 1),
                n_by_n_matrix_mib=round(n * n * 4 / 2**20),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(prog="alseg bench acquisition")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args(argv)
    q = a.quick
    rows = [
        bench_region_reduce(
            128 if q else 512, 256 if q else 1024, 19, 256 if q else 2048, a.device
        ),
        bench_budgeted_topk(200_000 if q else 6_000_000, 20_000 if q else 100_000, a.device),
        bench_pool_memory(
            4 if q else 16,
            128 if q else 512,
            256 if q else 1024,
            19,
            256 if q else 2048,
            2 if q else 4,
        ),
    ]
    rows += bench_diversity(2_000 if q else 50_000, 64 if q else 512, 20 if q else 500)
    return rows
