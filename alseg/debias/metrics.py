"""Group accuracies: the (class x bias) accuracy matrix and what is read off it.

- ``unbiased``: the mean of the group accuracies (every group counts the same, as on an
  unbiased test set);
- ``aligned`` / ``conflicting``: the mean over the bias-aligned groups (class c with its
  aligned bias value) / over all other groups;
- ``worst``: the lowest group accuracy;
- ``accuracy``: the plain accuracy over samples (dominated by the large groups).

Model selection uses one of these on the val split (``CRITERIA``), never on test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CRITERIA = ("worst", "unbiased", "conflicting", "accuracy")


@dataclass
class GroupAccuracy:
    """Attributes:
    correct, counts: (C, B) correct predictions and samples per group.
    aligned: (C,) the bias value each class is aligned with (from the training split).
    """

    correct: np.ndarray
    counts: np.ndarray
    aligned: np.ndarray

    @classmethod
    def of(
        cls,
        preds: np.ndarray,
        labels: np.ndarray,
        biases: np.ndarray,
        shape: tuple[int, int],
        aligned: np.ndarray,
    ) -> GroupAccuracy:
        C, B = shape
        g = np.asarray(labels) * B + np.asarray(biases)
        hit = (np.asarray(preds) == np.asarray(labels)).astype(np.float64)
        correct = np.bincount(g, weights=hit, minlength=C * B).reshape(C, B)
        counts = np.bincount(g, minlength=C * B).reshape(C, B)
        return cls(correct, counts, np.asarray(aligned))

    @property
    def matrix(self) -> np.ndarray:
        """(C, B) accuracy in %; NaN for a group without samples."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.counts > 0, 100.0 * self.correct / self.counts, np.nan)

    def summary(self) -> dict[str, float]:
        m = self.matrix
        is_aligned = np.zeros_like(m, dtype=bool)
        is_aligned[np.arange(len(m)), self.aligned] = True
        present = self.counts > 0
        return {
            "accuracy": float(100.0 * self.correct.sum() / max(self.counts.sum(), 1)),
            "unbiased": float(np.nanmean(m)),
            "aligned": _mean(m[is_aligned & present]),
            "conflicting": _mean(m[~is_aligned & present]),
            "worst": float(np.nanmin(m)),
        }


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")
