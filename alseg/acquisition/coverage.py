"""Cold-start strategies on region embeddings: TypiClust and ProbCover.

Both are low-budget methods (Hacohen et al., ICML 2022; Yehuda et al., NeurIPS 2022; the
official code of both is avihu111/TypiClust, ``deep-al/pycls/al/typiclust.py`` and
``prob_cover.py``): they choose what is typical or covering in a self-supervised
embedding, before a model's uncertainty means anything; the papers switch to uncertainty
once the budget grows (``active.strategy=[typiclust,bvsb]``).

Embeddings: each region's mean of the encoder's deepest features (``embedding=pretrained``:
the encoder as ``alseg pretrain`` left it, in a freshly built model; ``model``: the current
model's encoder), L2-normalised as the official features are.

Scale: the rows are a pseudo-random sample of at most ``max_candidates`` unlabeled and as
many labeled regions (by a hash of their ids, the same on every rank), so memory is
O(max_candidates x D): at Cityscapes scale (6.1M SEEDS regions, D = 512) the default
20,000 rows take ~40 MB; k-means (Lloyd, k-means++ seeding) and the distance graph run
in blocks of rows. Clustering a sample instead of every region is our choice (the
official code clusters every image: 50K CIFAR images, MiniBatchKMeans beyond 50 clusters).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from alseg.acquisition.base import (
    BatchOutputs,
    DiversityStrategy,
    RegionStats,
    Rows,
    Selection,
    SelectionContext,
    Stats,
    hash_key,
)
from alseg.acquisition.reduce import region_feature_mean
from alseg.models.segmentation import PredictOutputs

EMBEDDINGS = ("pretrained", "model")
# ProbCover's candidate radii for L2-normalised embeddings (distances lie in [0, 2])
DELTA_GRID = tuple(round(0.05 * i, 2) for i in range(1, 41))


# -- pure functions -------------------------------------------------------------------------
def kmeans(
    x: torch.Tensor, k: int, generator: torch.Generator, iters: int = 50, block: int = 4096
) -> torch.Tensor:
    """(N,) cluster of each row of ``x`` (N, D): Lloyd's k-means from k-means++ seeds."""
    n = x.shape[0]
    k = min(k, n)
    centers = x[torch.randint(n, (1,), generator=generator)]
    d2 = _min_sq_dist(x, centers, block)
    for _ in range(1, k):  # k-means++: the next seed with probability ~ squared distance
        p = d2.clamp_min(0)
        i = int(torch.multinomial(p / p.sum(), 1, generator=generator)) if p.sum() > 0 else 0
        centers = torch.cat([centers, x[i : i + 1]])
        d2 = torch.minimum(d2, _sq_dist(x, x[i : i + 1], block).squeeze(1))
    labels = torch.full((n,), -1, dtype=torch.long)
    for _ in range(iters):
        new = torch.cat(
            [_sq_dist(x[s : s + block], centers, block).argmin(1) for s in range(0, n, block)]
        )
        if torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(centers).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).float()
        keep = counts > 0  # an empty cluster keeps its center
        centers[keep] = sums[keep] / counts[keep, None]
    return labels


def _sq_dist(a: torch.Tensor, b: torch.Tensor, block: int) -> torch.Tensor:
    """(len(a), len(b)) squared L2 distances, b in blocks."""
    out = [torch.cdist(a, b[s : s + block]).pow(2) for s in range(0, b.shape[0], block)]
    return torch.cat(out, dim=1)


def _min_sq_dist(x: torch.Tensor, centers: torch.Tensor, block: int) -> torch.Tensor:
    return torch.cat(
        [_sq_dist(x[s : s + block], centers, block).min(1).values for s in range(0, len(x), block)]
    )


def typicality(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N,) 1 / (mean squared L2 distance to the k nearest other rows + 1e-5): the official
    typicality (faiss's IndexFlatL2 returns squared distances)."""
    d2 = torch.cdist(x, x).pow(2)
    d2.fill_diagonal_(math.inf)
    k = max(1, min(k, x.shape[0] - 1))
    nearest = d2.topk(k, dim=1, largest=False).values
    return 1.0 / (nearest.mean(1) + 1e-5)


def typiclust_order(
    x: torch.Tensor,
    labeled: torch.Tensor,
    n_new: int,
    generator: torch.Generator,
    max_clusters: int = 500,
    min_cluster_size: int = 5,
    k_nn: int = 20,
) -> list[int]:
    """TypiClust's picks among the rows of ``x`` (N, D), in order: k-means into
    min(|labeled| + n_new, max_clusters) clusters; clusters of more than
    ``min_cluster_size`` rows sorted by their labeled count (fewest first), then size
    (largest first); round-robin over them, each time the most typical row of the cluster
    not labeled or picked (typicality among those rows, k = min(k_nn, their number // 2)).
    When every cluster is exhausted or too small before ``n_new`` picks (the official code
    fails there), the remaining free rows follow by typicality among all free rows: our
    addition, so that a round still spends its budget.

    Args:
        labeled: (N,) bool rows already labeled.
        n_new: rows to pick (fewer when the clusters run out).
    """
    k = min(int(labeled.sum()) + n_new, max_clusters, x.shape[0])
    clusters = kmeans(x, k, generator)
    sizes = torch.bincount(clusters, minlength=k)
    counts = torch.bincount(clusters[labeled], minlength=k)
    order = [
        c
        for c in sorted(range(k), key=lambda c: (int(counts[c]), -int(sizes[c]), c))
        if sizes[c] > min_cluster_size
    ]
    free = ~labeled.clone()
    picks: list[int] = []
    i = 0
    while len(picks) < n_new and order and free.any():
        c = order[i % len(order)]
        rows = torch.nonzero(free & (clusters == c)).flatten()
        if rows.numel() == 0:  # exhausted (the official code would fail here): skip it
            order.remove(c)
            continue
        if rows.numel() == 1:
            best = int(rows[0])
        else:
            t = typicality(x[rows], min(k_nn, rows.numel() // 2))
            best = int(rows[int(t.argmax())])
        picks.append(best)
        free[best] = False
        i += 1
    if len(picks) < n_new and free.any():
        rows = torch.nonzero(free).flatten()
        t = typicality(x[rows], min(k_nn, max(1, rows.numel() // 2)))
        picks += rows[t.argsort(descending=True)][: n_new - len(picks)].tolist()
    return picks


def ball_purity(x: torch.Tensor, pseudo: torch.Tensor, delta: float, block: int = 4096) -> float:
    """Share of rows whose delta-ball (distance < delta) holds rows of their own pseudo
    label only."""
    pure = torch.ones(x.shape[0], dtype=torch.bool)
    for s in range(0, x.shape[0], block):
        d = torch.cdist(x[s : s + block], x)
        other = pseudo[None, :] != pseudo[s : s + block, None]
        pure[s : s + block] = ~((d < delta) & other).any(1)
    return float(pure.float().mean())


def purity_radius(
    x: torch.Tensor,
    num_classes: int,
    generator: torch.Generator,
    alpha: float = 0.95,
    grid: tuple[float, ...] = DELTA_GRID,
) -> float:
    """ProbCover's delta: the largest radius of ``grid`` whose balls are pure (k-means
    pseudo labels, k = ``num_classes``) for at least ``alpha`` of the rows (purity falls
    as delta grows); the smallest grid value if none is."""
    pseudo = kmeans(x, num_classes, generator)
    best = grid[0]
    for delta in grid:
        if ball_purity(x, pseudo, delta) < alpha:
            break
        best = delta
    return best


def probcover_order(
    x: torch.Tensor,
    labeled: torch.Tensor,
    delta: float,
    n_new: int,
    generator: torch.Generator,
    block: int = 4096,
) -> list[int]:
    """ProbCover's greedy picks: the graph has an edge x -> y when ||x - y|| < delta;
    points the labeled rows reach are covered; each pick is the row reaching the most
    uncovered points (ties: the first row), whose points are then covered. Once everything
    is covered, the rest are random unlabeled rows (the official code would pick its first
    row again)."""
    n = x.shape[0]
    src, dst = [], []
    for s in range(0, n, block):
        r, c = torch.nonzero(torch.cdist(x[s : s + block], x) < delta, as_tuple=True)
        src.append(r + s)
        dst.append(c)
    edge_src, edge_dst = torch.cat(src), torch.cat(dst)
    covered = torch.zeros(n, dtype=torch.bool)
    covered[edge_dst[labeled[edge_src]]] = True
    free = ~labeled.clone()
    picks: list[int] = []
    while len(picks) < n_new and free.any():
        live = ~covered[edge_dst]
        degree = torch.bincount(edge_src[live], minlength=n)
        degree[~free] = -1
        if int(degree.max()) <= 0:
            rest = torch.nonzero(free).flatten()
            rest = rest[torch.randperm(rest.numel(), generator=generator)]
            picks += rest[: n_new - len(picks)].tolist()
            break
        best = int(degree.argmax())
        covered[edge_dst[live & (edge_src == best)]] = True
        picks.append(best)
        free[best] = False
    return picks


# -- strategies -----------------------------------------------------------------------------
class _CoverageStrategy(DiversityStrategy):
    """Rows: a pseudo-random sample (id hash) of unlabeled and labeled regions with their
    normalised embeddings; ``order`` ranks the rows it picks, the budget walks that order."""

    uses_centers = True
    needs_features = False

    def __init__(self, embedding: str = "pretrained", max_candidates: int = 20_000) -> None:
        super().__init__(max_candidates)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding={embedding!r} is not valid; choose one of {EMBEDDINGS}")
        self.embedding = embedding
        # the acquisition model: a freshly built one (the pre-trained encoder), or the last
        self.fresh_model = embedding == "pretrained"

    def outputs(self, channels_last: bool = False) -> PredictOutputs:
        return PredictOutputs(backbone=True, channels_last=channels_last)

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        assert batch.backbone is not None
        feat = region_feature_mean(batch.backbone, batch.regions, batch.num_regions)
        feat = F.normalize(feat, dim=1)
        h = hash_key(batch.ids)
        none = torch.full_like(h, -math.inf)
        return RegionStats(
            score=torch.zeros_like(h),
            cand=Rows(torch.where(batch.labeled, none, h), {"feat": feat}),
            center=Rows(torch.where(batch.labeled, h, none), {"feat": feat}),
        )

    def order(
        self, x: torch.Tensor, labeled: torch.Tensor, n_new: int, g: torch.Generator
    ) -> list[int]:
        raise NotImplementedError

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        x = fields["feat"].float().cpu()
        lab, c, budget = ctx.labeled.cpu(), ctx.costs.cpu(), ctx.budget
        unl = c[~lab]
        # rows to rank: enough that the cheapest ones fill the budget
        n_new = min(int((~lab).sum()), max(1, math.ceil(budget / float(unl.min().clamp_min(1e-9)))))
        picks = self.order(x, lab, n_new, ctx.generator)
        keep, spent = [], 0.0
        for row in picks:  # the budget walks the order, as budgeted_topk walks scores
            if spent + float(c[row]) <= budget + 1e-9:
                keep.append(row)
                spent += float(c[row])
        return Selection(torch.tensor(keep, dtype=torch.long))


class TypiClustStrategy(_CoverageStrategy):
    """TypiClust (see the module docstring); parameters: ``embedding``, ``max_candidates``,
    and the official constants ``max_clusters`` 500, ``min_cluster_size`` 5, ``k_nn`` 20."""

    name = "typiclust"

    def __init__(
        self,
        embedding: str = "pretrained",
        max_candidates: int = 20_000,
        max_clusters: int = 500,
        min_cluster_size: int = 5,
        k_nn: int = 20,
    ) -> None:
        super().__init__(embedding, max_candidates)
        self.max_clusters, self.min_cluster_size, self.k_nn = max_clusters, min_cluster_size, k_nn

    def order(
        self, x: torch.Tensor, labeled: torch.Tensor, n_new: int, g: torch.Generator
    ) -> list[int]:
        return typiclust_order(
            x, labeled, n_new, g, self.max_clusters, self.min_cluster_size, self.k_nn
        )


class ProbCoverStrategy(_CoverageStrategy):
    """ProbCover (see the module docstring); ``delta``: the ball radius (null: the purity
    radius, ``alpha`` 0.95 with k-means pseudo labels of ``num_classes`` clusters)."""

    name = "probcover"

    def __init__(
        self,
        embedding: str = "pretrained",
        max_candidates: int = 20_000,
        delta: float | None = None,
        alpha: float = 0.95,
        num_classes: int = 10,
    ) -> None:
        super().__init__(embedding, max_candidates)
        if delta is not None and delta <= 0:
            raise ValueError(f"delta={delta} must be > 0")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha={alpha} must be in (0, 1]")
        self.delta, self.alpha, self.num_classes = delta, alpha, num_classes

    def order(
        self, x: torch.Tensor, labeled: torch.Tensor, n_new: int, g: torch.Generator
    ) -> list[int]:
        delta = self.delta
        if delta is None:
            delta = purity_radius(x, self.num_classes, g, self.alpha)
        return probcover_order(x, labeled, delta, n_new, g)
