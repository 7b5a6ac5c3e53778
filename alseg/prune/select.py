"""Which samples to keep: rules over a score (formulas in docs/methods.md).

Every rule returns the sorted indices of ``round(keep * N)`` samples. Scores are turned
into *difficulty* (higher = harder: the score itself, or its negative for AUM).

- ``hardest``: the hardest first (data_diet's ``keep_max_scores``);
- ``easiest``: the easiest first;
- ``offset``: skip the ``offset`` (a fraction of N) hardest, then the hardest
  (data_diet's ``offset`` subsets, counted from the hard end);
- ``random``: uniformly at random; ``random_balanced``: per class (or, for segmentation,
  per dominant class of an image) ``round(keep * n_c)`` at random;
- ``hardest_balanced``: per class the ``round(keep * n_c)`` hardest (a class-balanced
  hardest-first rule: no class can be emptied by a score that ranks whole classes);
- ``ccs``: coverage-centric selection (Zheng et al., 2023): drop the ``beta`` hardest,
  split the rest into ``strata`` equal-width bins of the score, and fill the budget from
  the smallest bin up (each bin gives at most an equal share of what is left), at random
  within a bin.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alseg.prune.scores import HARDER_IS_HIGHER
from alseg.schema.sections import IMAGE_RULES as RULES

BALANCED = ("random_balanced", "hardest_balanced")


def difficulty(score: np.ndarray, name: str) -> np.ndarray:
    """Higher = harder. Infinite values (never-learned samples) stay the hardest."""
    s = np.asarray(score, dtype=np.float64)
    return s if HARDER_IS_HIGHER.get(name, True) else -s


def budget(n: int, keep: float) -> int:
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"prune.keep={keep:g} must be in (0, 1]")
    return max(1, int(round(keep * n)))


def _hardest_order(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices from hardest to easiest; ties in a random order (not by index)."""
    return np.lexsort((rng.random(len(d)), -d))


def bin_allocate(total: int, sizes: np.ndarray) -> np.ndarray:
    """CCS's allocation: visit the bins from the smallest; each takes
    min(its size, what is left // bins left)."""
    order = np.argsort(sizes, kind="stable")
    out = np.zeros(len(sizes), dtype=np.int64)
    left = total
    for k, b in enumerate(order):
        take = min(int(sizes[b]), left // (len(sizes) - k))
        out[b] = take
        left -= take
    return out


def ccs(
    score: np.ndarray, name: str, keep: float, beta: float, strata: int, rng: np.random.Generator
) -> np.ndarray:
    d = difficulty(score, name)
    n, k = len(d), budget(len(d), keep)
    dropped = int(round(beta * n))
    rest = _hardest_order(d, rng)[dropped:]
    if len(rest) < k:
        raise ValueError(
            f"prune.ccs_beta={beta} drops {dropped} of {n} samples: fewer than the "
            f"{k} to keep (prune.keep={keep})"
        )
    values = np.asarray(score, dtype=np.float64)[rest]
    finite = np.isfinite(values)
    values = np.where(finite, values, values[finite].max() + 1 if finite.any() else 0.0)
    lo, hi = values.min(), values.max() * 1.0001 if values.max() > 0 else values.max() + 1e-9
    step = (hi - lo) / strata if hi > lo else 1.0
    bins = np.minimum(((values - lo) / step).astype(np.int64), strata - 1)
    sizes = np.bincount(bins, minlength=strata)
    take = bin_allocate(k, sizes)
    kept = [rng.permutation(rest[bins == b])[: take[b]] for b in range(strata)]
    return np.concatenate(kept)


def _per_class(classes: np.ndarray, keep: float, order: Any) -> np.ndarray:
    """Sorted indices: from each class c the first ``round(keep * n_c)`` of
    ``order(indices of c)``."""
    kept = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        kept.append(order(idx)[: int(round(keep * len(idx)))])
    return np.sort(np.concatenate(kept))


def select(
    rule: str,
    keep: float,
    score: np.ndarray | None = None,
    name: str = "",
    classes: np.ndarray | None = None,
    offset: float = 0.0,
    beta: float = 0.1,
    strata: int = 50,
    seed: int = 0,
) -> np.ndarray:
    """Sorted indices of the kept samples.

    Args:
        rule: one of ``RULES``.
        keep: the kept fraction in (0, 1].
        score: (N,) the score (not needed by random rules; N is then len(classes)).
        name: the score's name (its direction: ``alseg.prune.scores.HARDER_IS_HIGHER``).
        classes: (N,) class (or dominant class) per sample, for the balanced rules.
        offset: ``offset`` rule: the fraction of hardest samples skipped.
        beta, strata: ``ccs``.
        seed: random rules and tie-breaking.
    """
    rng = np.random.default_rng(seed)
    if rule not in RULES:
        raise ValueError(f"prune.rule={rule!r} is not valid; choose one of: {', '.join(RULES)}")
    if rule in BALANCED and classes is None:
        raise ValueError(f"prune.rule={rule} needs a class per sample")
    if rule == "random":
        n = len(score) if score is not None else len(classes)  # type: ignore[arg-type]
        return np.sort(rng.permutation(n)[: budget(n, keep)])
    if rule == "random_balanced":
        return _per_class(np.asarray(classes), keep, lambda idx: rng.permutation(idx))
    if score is None:
        raise ValueError(f"prune.rule={rule} needs a score (prune.by)")
    if rule == "hardest_balanced":
        d = difficulty(score, name)
        return _per_class(np.asarray(classes), keep, lambda idx: idx[_hardest_order(d[idx], rng)])
    if rule == "ccs":
        return np.sort(ccs(score, name, keep, beta, strata, rng))
    d = difficulty(score, name)
    n, k = len(d), budget(len(d), keep)
    order = _hardest_order(d, rng)
    if rule == "easiest":
        order = order[::-1]
    start = int(round(offset * n)) if rule == "offset" else 0
    if start + k > n:
        raise ValueError(f"prune.offset={offset} skips {start} of {n}: fewer than {k} remain")
    return np.sort(order[start : start + k])
