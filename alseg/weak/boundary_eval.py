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
4-neighbour has another (non-void) label (the class-agnostic map is their union), or the
data set's own class boundaries where it has them (SBD).

Semantic (per-class) boundaries, as the SBD benchmark scores them: class c's F-measure over
every image (an image without class c contributes its false positives), the mean over the
classes that have ground-truth boundaries (mF). A class-agnostic boundary map B becomes
class maps with a segmentation: B_c = B where the segmentation says c (our choice: the
paper trains a C-channel detector on pseudo boundary labels; here B and the stage-2
model share the work).
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


def class_boundaries(labels: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(C, H, W) bool: the boundary pixels of each class (``label_boundaries`` of class c's
    pixels)."""
    lab = np.asarray(labels)
    edge = label_boundaries(lab, ignore_index)
    return np.stack([edge & (lab == c) for c in range(num_classes)])


def semantic_maps(boundary: np.ndarray, segmentation: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, H, W) class boundary maps: the boundary probability ``boundary`` (H, W) where the
    ``segmentation`` (H, W) is class c, 0 elsewhere."""
    seg = np.asarray(segmentation)
    return np.stack([np.where(seg == c, boundary, 0.0) for c in range(num_classes)])


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


THRESHOLDS = tuple(float(t) for t in np.linspace(0.05, 0.95, 19))


def f_measure(
    probs: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    thresholds: Sequence[float] = THRESHOLDS,
    tolerance: float = 1.0,
    thin: bool = True,
    max_dist: float | None = None,
) -> BoundaryScores:
    """ODS / OIS of boundary probability maps against ground-truth boundary maps.

    Args:
        probs: (H, W) boundary probabilities per image.
        gts: (H, W) bool ground-truth boundaries per image.
        thresholds: where the maps are cut.
        tolerance: the matching distance in pixels, unless ``max_dist`` is given.
        thin: thin the thresholded maps to one-pixel lines (as BSDS).
        max_dist: the matching distance as a fraction of each image's diagonal, as the
            benchmarks give it (BSDS's correspondPixels and SEAL: 0.0075; SBD's benchmark:
            0.02); replaces ``tolerance``.
    """
    from skimage.morphology import thin as thin_lines

    T = len(thresholds)
    counts = np.zeros((len(probs), T, 4))  # matched, predicted, matched (gt side), gt
    for i, (prob, gt) in enumerate(zip(probs, gts)):
        tol = tolerance if max_dist is None else max_dist * float(np.hypot(*np.shape(prob)))
        for t, th in enumerate(thresholds):
            pred = np.asarray(prob) >= th
            if thin:
                pred = thin_lines(pred)
            m, n_p, n_g = match_counts(pred, np.asarray(gt, dtype=bool), tol)
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


def class_f_measures(
    probs: Sequence[np.ndarray],
    gts: Sequence[np.ndarray],
    classes: Sequence[int],
    thresholds: Sequence[float] = THRESHOLDS,
    tolerance: float = 1.0,
    max_dist: float | None = None,
) -> dict[int, BoundaryScores]:
    """Per-class ODS / OIS of (C, H, W) class boundary maps against (C, H, W) ground
    truth, for each class of ``classes`` with ground-truth boundary pixels in some image
    (the others have no recall to measure and are left out, as in the SBD benchmark)."""
    out = {}
    for c in classes:
        if any(np.asarray(g[c]).any() for g in gts):
            out[c] = f_measure(
                [p[c] for p in probs],
                [g[c] for g in gts],
                thresholds,
                tolerance,
                max_dist=max_dist,
            )
    return out
