"""Per-image sampling weights: the ones a debiasing run saved (``data.image_weights``) and
the source-domain weights that match a class prior (active domain adaptation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def load_image_weights(path: str | Path, num_images: int) -> np.ndarray:
    """(num_images,) per-image weights from a ``weights.parquet`` (columns ``index`` and
    ``weight``; a debiasing run writes one) that covers every pool image once."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data.image_weights={path}: file not found")
    df = pd.read_parquet(path)
    missing = {"index", "weight"} - set(df.columns)
    if missing:
        raise ValueError(
            f"{path} has no column {sorted(missing)[0]!r}; columns: {list(df.columns)}"
        )
    index, weight = df["index"].to_numpy(), df["weight"].to_numpy(dtype=np.float64)
    if len(df) != num_images or np.any(np.sort(index) != np.arange(num_images)):
        raise ValueError(
            f"{path} has {len(df)} rows (indices {index.min() if len(df) else '-'}.."
            f"{index.max() if len(df) else '-'}); the pool has {num_images} images: it needs "
            "one row per pool image, index 0..N-1"
        )
    if not np.all(np.isfinite(weight)) or np.any(weight < 0):
        raise ValueError(f"{path}: weights must be finite and >= 0")
    out = np.empty(num_images)
    out[index] = weight
    return out


def source_image_weights(class_pixels: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """Sampling weight of each source image so that source batches follow ``prior``.

    w_i = sum_c share_i(c) prior(c) / P_s(c), with share_i the class shares of image i's
    labeled pixels and P_s(c) the mean of share_i(c) over the source images; for one-class
    images (classification) this is LAMDA's p_t(y_i) / n_s(y_i) up to a constant, and the
    sampled images' labels follow ``prior`` exactly. ``prior=None``: class-balanced
    (uniform over the classes present in the source).

    Args:
        class_pixels: (N_s, C) labeled pixels of each class per source image.
    """
    counts = class_pixels.astype(np.float64)
    share = counts / counts.sum(1, keepdims=True).clip(min=1)
    mean_share = share.mean(0)
    present = mean_share > 0
    if prior is None:
        prior = present / present.sum()
    prior = np.asarray(prior, dtype=np.float64)
    ratio = np.where(present, prior / np.where(present, mean_share, 1.0), 0.0)
    w = share @ ratio
    return w if w.sum() > 0 else np.ones(len(w))
