"""Figures of a run, written as PNG (matplotlib, headless)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alseg.atomic import atomic_write_bytes


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curve(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> None:
    """mIoU (test) against clicks spent, one point per round."""
    plt = _pyplot()
    clicks = [float(r["clicks"]) for r in rows]
    miou = [float(r["mIoU"]) for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(clicks, miou, marker="o")
    for r, x, y in zip(rows, clicks, miou):
        ax.annotate(
            str(r["round"]), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=8
        )
    ax.set_xlabel("clicks")
    ax.set_ylabel("test mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def selection_panels(
    image: np.ndarray,
    regions: np.ndarray,
    selected: np.ndarray,
    answers: np.ndarray,
    predicted: np.ndarray,
    palette: np.ndarray,
) -> np.ndarray:
    """One image's selections side by side: the image with the selected regions outlined,
    the answers and the model's predicted classes painted on those regions.

    Args:
        image: (H, W, 3) uint8.
        regions: (H, W) local region ids.
        selected, answers, predicted: (K,) region ids and their class (-1: none to paint).
        palette: (C, 3) uint8 class colours.
    Returns:
        (H, 3 W + 4, 3) float in [0, 1].
    """
    from skimage.segmentation import mark_boundaries

    chosen = np.isin(regions, selected)
    outlined = mark_boundaries(
        image, np.where(chosen, regions + 1, 0), color=(1, 1, 0), mode="inner"
    )

    def paint(classes: np.ndarray) -> np.ndarray:
        out = image.astype(np.float64) / 255 * 0.35  # dimmed background
        lut = np.full(int(regions.max()) + 1, -1)
        lut[selected] = classes
        cls = lut[regions]
        ok = cls >= 0
        out[ok] = palette[cls[ok] % len(palette)] / 255.0
        return out

    gap = np.ones((image.shape[0], 2, 3))
    return np.concatenate([outlined, gap, paint(answers), gap, paint(predicted)], axis=1)


def save_bar_chart(counts: dict[str, int], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(3, 0.5 * len(counts) + 1), 2.6))
    ax.bar(list(counts), list(counts.values()), color="tab:blue")
    ax.set_ylabel("regions")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=45, labelsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_overlay_grid(tiles: Sequence[np.ndarray], path: Path, titles: Sequence[str]) -> None:
    plt = _pyplot()
    n = max(1, len(tiles))
    fig, axes = plt.subplots(n, 1, figsize=(6.6, 2.4 * n), squeeze=False)
    axes = axes.T
    for ax, tile, t in zip(axes[0], tiles, titles):
        ax.imshow(tile, interpolation="nearest")
        ax.set_title(t, fontsize=8)
    for ax in axes[0]:
        ax.axis("off")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
