"""Boundary F-measure with a matching tolerance, as the BSDS benchmark defines it (and
pyEdgeEval, its Python port, computes it): at each threshold the boundary map is
thresholded and thinned to one-pixel lines, predicted and ground-truth boundary pixels are
matched one to one within ``tolerance`` pixels (a maximum bipartite matching), precision
= matched predicted / predicted, recall = matched ground truth / ground truth.

* ODS (optimal dataset scale): the counts summed over images at each threshold, the
  best F over thresholds;
* OIS (optimal image scale): each image at its own best threshold, those counts summed,
  one F.

Ground truth: a pixel is a boundary pixel of class c when it is labeled c and a
4-neighbour has another (non-void) label (the class-agnostic map is their union).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def label_boundaries(labels: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W) bool: labeled pixels with a 4-neighbour of another labeled class."""
    lab = np.asarray(labels)
    known = lab != ignore_index
    out = np.zeros(lab.shape, dtype=bool)
    v = (lab[1:] != lab[:-1]) & known[1:] & known[:-1]
    out[1:] |= v
    out[:-1] |= v
    h = (lab[:, 1:] != lab[:, :-1]) & known[:, 1:] & known[:, :-1]
    out[:, 1:] |= h
    out[:, :-1] |= h
    return out


def match_counts(pred: np.ndarray, gt: np.ndarray, tolerance: float) -> tuple[int, int, int]:
    """(matched pairs, predicted pixels, ground-truth pixels) of two (H, W) bool maps,
    matched one to one within ``tolerance`` pixels (Euclidean)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching
    from scipy.spatial import cKDTree

    p, g = np.argwhere(pred), np.argwhere(gt)
    if len(p) == 0 or len(g) == 0:
        return 0, len(p), len(g)
    pairs = cKDTree(p).query_ball_tree(cKDTree(g), r=tolerance + 1e-9)
    rows = np.repeat(np.arange(len(p)), [len(x) for x in pairs])
    cols = np.fromiter((j for x in pairs for j in x), dtype=np.int64, count=len(rows))
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(p), len(g))).tocsr()
    matched = int((maximum_bipartite_matching(graph, perm_type="column") >= 0).sum())
    return matched, len(p), len(g)


def _f(matched_p: float, n_p: float, matched_g: float, n_g: float) -> tuple[float, float, float]:
    prec = matched_p / n_p if n_p else 0.0
    rec = matched_g / n_g if n_g else 0.0
    return prec, rec, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


@dataclass
class BoundaryScores:
    ods: float  # F at the best common threshold
    ods_threshold: float
    ois: float  # F with each image at its best threshold
    precision: float  # at the ODS threshold
    recall: float


def f_measure(
    probs: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    thresholds: Sequence[float] = tuple(np.linspace(0.05, 0.95, 19)),
    tolerance: float = 1.0,
    thin: bool = True,
) -> BoundaryScores:
    """ODS / OIS of boundary probability maps against ground-truth boundary maps.

    Args:
        probs: (H, W) boundary probabilities per image.
        gts: (H, W) bool ground-truth boundaries per image.
        thresholds: where the maps are cut.
        tolerance: the matching distance in pixels (BSDS: 0.0075 of the image diagonal).
        thin: thin the thresholded maps to one-pixel lines (as BSDS).
    """
    from skimage.morphology import thin as thin_lines

    T = len(thresholds)
    counts = np.zeros((len(probs), T, 4))  # matched, predicted, matched (gt side), gt
    for i, (prob, gt) in enumerate(zip(probs, gts)):
        for t, th in enumerate(thresholds):
            pred = np.asarray(prob) >= th
            if thin:
                pred = thin_lines(pred)
            m, n_p, n_g = match_counts(pred, np.asarray(gt, dtype=bool), tolerance)
            counts[i, t] = (m, n_p, m, n_g)
    total = counts.sum(0)
    f_ods = [_f(*total[t]) for t in range(T)]
    best = int(np.argmax([f for _, _, f in f_ods]))
    per_image = [
        int(np.argmax([_f(*counts[i, t])[2] for t in range(T)])) for i in range(len(probs))
    ]
    ois = _f(*sum((counts[i, t] for i, t in enumerate(per_image)), np.zeros(4)))[2]
    prec, rec, ods = f_ods[best]
    return BoundaryScores(ods, float(thresholds[best]), ois, prec, rec)
