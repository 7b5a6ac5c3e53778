"""Adaptive superpixels (Kim et al., ICCV 2023): merging base regions whose predictions
agree, and the knee of a confidence curve (for sieving).

In the round loop: ``AdaptiveSizeBalancedBvSB`` (``active.strategy=adaptive_sizebal``)
merges the base regions of every pool batch in the scoring pass with the previous round's
model and scores the merged regions; the oracle answers one dominant label per merged
region (``SimulatedOracle.annotate_merged``); ``alseg.extensions.sieve`` drops the labeled
pixels whose confidence is below the knee of their merged region (``sieve.enabled``).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from alseg.acquisition import scores as S
from alseg.acquisition.base import BatchOutputs, PoolStats, RegionStats
from alseg.acquisition.reduce import region_majority, region_reduce
from alseg.acquisition.uncertainty import SizeBalancedBvSB
from alseg.data.regions import region_adjacency


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(-1)


def js_distance(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Square root of the Jensen-Shannon divergence (natural log), row-wise, as
    ``scipy.spatial.distance.jensenshannon``: (..., C) x (..., C) -> (...)."""
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    jsd = _entropy_rows((p + q) / 2) - (_entropy_rows(p) + _entropy_rows(q)) / 2
    return np.sqrt(np.clip(jsd, 0.0, None))


def merge_regions(
    edges: torch.Tensor,
    region_probs: torch.Tensor,
    region_uncertainty: torch.Tensor,
    eps: float = 0.1,
) -> torch.Tensor:
    """Merge base regions into adaptive superpixels.

    Regions are visited by descending uncertainty (ties: lower id first). An unmerged seed
    claims every unmerged region reachable from it through regions v with
    JS(probs[seed], probs[v]) < eps (breadth first; each region joins one merged region;
    the seed always belongs to its own).

    Args:
        edges: (E, 2) long undirected adjacency (``region_adjacency``).
        region_probs: (R, C) mean softmax of each base region.
        region_uncertainty: (R,) e.g. mean BvSB.
        eps: JS distance threshold (0.1 in the paper).
    Returns:
        (R,) long merged-region id of each base region, 0..M-1 in the order of the seeds.
    """
    probs = region_probs.detach().double().cpu().numpy()
    unc = region_uncertainty.detach().double().cpu().numpy()
    R = probs.shape[0]
    e = edges.detach().long().cpu().numpy().reshape(-1, 2)
    # JS of every edge once, vectorised: the first BFS layer of a seed is exactly its
    # neighbours across "close" edges, so most seeds never compute a distance again.
    close = js_distance(probs[e[:, 0]], probs[e[:, 1]]) < eps
    nbrs: list[list[int]] = [[] for _ in range(R)]
    near: list[list[int]] = [[] for _ in range(R)]
    for (a, b), c in zip(e.tolist(), close.tolist()):
        nbrs[a].append(b)
        nbrs[b].append(a)
        if c:
            near[a].append(b)
            near[b].append(a)

    label = [-1] * R
    order = np.lexsort((np.arange(R), -unc)).tolist()  # descending uncertainty, then id
    m = 0
    for s in order:
        if label[s] >= 0:
            continue
        label[s] = m
        frontier = [v for v in near[s] if label[v] < 0]
        for v in frontier:
            label[v] = m
        while frontier:  # deeper layers: distances to the seed, one numpy call per layer
            cand = sorted({v for u in frontier for v in nbrs[u] if label[v] < 0})
            if not cand:
                break
            ok = js_distance(probs[s][None], probs[cand]) < eps
            frontier = [v for v, k in zip(cand, ok.tolist()) if k]
            for v in frontier:
                label[v] = m
        m += 1
    return torch.tensor(label, dtype=torch.long)


def knee_threshold(confidences: torch.Tensor | np.ndarray, step: int = 20) -> float:
    """Confidence value at the knee of the sorted confidence curve, as the official
    adaptive-superpixel code finds it: the confidences are sorted ascending and every
    (n // ``step``)-th one kept; kneed's ``KneeLocator(S=1, curve="concave",
    direction="increasing")`` gives the first knee (Kneedle, Satopaa et al., 2011); no knee
    means the smallest value, so a ``p >= threshold`` sieve keeps every pixel.
    """
    from kneed import KneeLocator

    c = np.sort(np.asarray(confidences, dtype=np.float64).ravel())
    if c.size == 0:
        return float("-inf")
    y = c[:: max(1, c.size // step)]
    if y.size < 3 or y[-1] <= y[0]:  # nothing to bend: keep all
        return float(y[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "No knee/elbow found"
        knee = KneeLocator(np.arange(y.size), y, S=1.0, curve="concave", direction="increasing")
    return float(y[int(knee.knee)]) if knee.knee is not None else float(y[0])


def merge_roots(label: torch.Tensor, region_uncertainty: torch.Tensor) -> torch.Tensor:
    """(M,) index of the seed of each merged region: its member visited first (largest
    uncertainty, then lowest id). A member visited before the seed would have been unmerged
    then and become a seed itself, so the seed is that member."""
    R = label.numel()
    order = np.lexsort((np.arange(R), -region_uncertainty.double().cpu().numpy()))
    lab = label.cpu().numpy()[order]
    first = np.unique(lab, return_index=True)[1]  # first position of each merged id
    return torch.from_numpy(order[first]).to(label.device)


class AdaptiveSizeBalancedBvSB(SizeBalancedBvSB):
    """Adaptive superpixels (Kim et al., ICCV 2023): in the scoring pass,
    the base regions of each image are merged (mean softmax and mean BvSB per base region,
    ``merge_regions`` with ``eps``; labeled base regions are never merged) and the merged
    regions are scored by ``sizebal`` (mean BvSB over the merged region's pixels x
    exp(-P_c) of its majority predicted class).

    Statistics per base region: ``root`` (global id of its merged region's seed; a merged
    region is a query, represented by its root), ``is_root``, and the merged region's
    ``bvsb``, ``pred``, ``size``.
    """

    name = "adaptive_sizebal"

    def __init__(
        self, eps: float = 0.1, temperature: float | None = None, power: float | None = None
    ) -> None:
        super().__init__(temperature, power)
        if not eps > 0:
            raise ValueError(f"eps={eps} must be > 0 (JS distance threshold of merging)")
        self.eps = eps

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        logits, regions, n = batch.logits, batch.regions, batch.num_regions
        C = logits.shape[1]
        pixel_bvsb = S.bvsb(batch.scaled_logits(self.temperature))
        probs = region_reduce(torch.softmax(logits.float(), 1).movedim(1, -1), regions, n)
        base_bvsb = region_reduce(pixel_bvsb, regions, n, "mean")
        edges = region_adjacency(regions)  # batch-compact ids: images never touch
        free = ~batch.labeled.to(edges.device)
        edges = edges[free[edges[:, 0]] & free[edges[:, 1]]]
        label = merge_regions(edges, probs, base_bvsb, self.eps).to(regions.device)
        roots = merge_roots(label, base_bvsb)
        merged = label[regions]  # (B, H, W) merged ids
        M = roots.numel()
        m_bvsb = region_reduce(pixel_bvsb, merged, M, "mean")
        m_pred = region_majority(logits.argmax(1), merged, M, C)
        m_size = torch.bincount(merged.reshape(-1), minlength=M)
        root_of = roots[label]  # batch-compact id of each base region's root
        return RegionStats(
            root=batch.ids[root_of],
            pred=m_pred[label],
            regions={
                "is_root": root_of == torch.arange(n, device=root_of.device),
                "bvsb": m_bvsb[label],
                "size": m_size[label],
            },
        )

    def candidates(self, stats: PoolStats, labeled: torch.Tensor) -> torch.Tensor:
        return super().candidates(stats, labeled) & stats.regions["is_root"].to(labeled.device)
