"""LAMDA's label-distribution matching (Hwang et al., ECCV 2022; docs/methods.md):
after each selection, estimate the target label distribution from the labels bought so
far and the selection's free picks, and re-sample the labeled source domain so that its
classes follow the estimate (``adaptation.match_labels``; on by default for ``lamda``).

The estimate and the true distribution of the pool (dominant classes of all regions; for
the record only) are saved in ``label_dist/round_XX.json`` before the labels are
committed; their L1 distance is ``label_dist_l1`` in metrics.csv.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alseg.acquisition.base import Selection
from alseg.data.labels import Annotations
from alseg.extensions.base import Extension


def target_distribution(label_counts: np.ndarray, free_probs: np.ndarray | None) -> np.ndarray:
    """p_t(c) proportional to 1 + labels so far of class c + the top-1 probabilities of
    this round's free picks for class c.

    Args:
        label_counts: (C,) labels of each class bought so far (this round's included).
        free_probs: (F, C) mean softmax of each free pick (a zero row adds nothing: the
            strategy zeroes free picks that are labeled), or None (no free picks).
    Returns:
        (C,) probabilities.
    """
    p = 1.0 + np.asarray(label_counts, dtype=np.float64)
    if free_probs is not None and len(free_probs):
        np.add.at(p, free_probs.argmax(1), free_probs.max(1))
    return p / p.sum()


def _path(r: int) -> str:
    return f"label_dist/round_{r:02d}.json"


class LabelMatching(Extension):
    """Re-samples the source domain to the estimated target label distribution."""

    name = "label_matching"

    def __init__(self) -> None:
        self.record: dict[str, Any] = {}
        self._true: np.ndarray | None = None

    def after_select(self, r: int, ann: Annotations, selection: Selection) -> None:
        loop = self.loop
        C = int(loop.oracle.num_classes)
        targets = loop.store.region_targets()
        old = loop.store.labeled_mask() & (targets >= 0) & (targets < C)
        new = ann.classes[(ann.classes >= 0) & (ann.classes < C)]
        counts = np.bincount(targets[old], minlength=C)[:C] + np.bincount(new, minlength=C)[:C]
        p_t = target_distribution(counts, selection.extras.get("free_probs"))
        true = self.true_distribution()
        self.record = {
            "round": r,
            "estimate": p_t.tolist(),
            "true": true.tolist(),
            "l1": float(np.abs(p_t - true).sum()),
        }
        if loop.rank_zero:
            loop.rundir.write_json(_path(r), self.record)
        loop.dm.set_source_prior(p_t)

    def true_distribution(self) -> np.ndarray:
        """(C,) share of each class among the dominant classes of all pool regions."""
        if self._true is None:
            oracle = self.loop.oracle
            C = int(oracle.num_classes)
            dom = np.concatenate(
                [oracle.dominant_classes(i) for i in range(len(self.loop.dm.regions))]
            )
            counts = np.bincount(dom[dom < C], minlength=C)[:C].astype(np.float64)
            self._true = counts / max(counts.sum(), 1.0)
        return self._true

    def on_resume(self, r: int, phase: str) -> None:
        for k in range(r, 0, -1):
            data = self.loop.rundir.read_json(_path(k))
            if data is not None:
                self.record = data
                self.loop.dm.set_source_prior(np.asarray(data["estimate"]))
                return

    def metrics_row(self, r: int) -> dict[str, float]:
        ok = self.record.get("round") == r
        return {"label_dist_l1": round(float(self.record["l1"]), 4) if ok else float("nan")}
