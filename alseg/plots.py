"""Figures of a run, written as PNG (matplotlib, headless)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from alseg.rundir import atomic_write_bytes


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


def selection_overlay(image: np.ndarray, regions: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 image with the outlines of the ``selected`` local region ids drawn in
    yellow -> (H, W, 3) float in [0, 1]."""
    from skimage.segmentation import mark_boundaries

    chosen = np.isin(regions, selected)
    label = np.where(chosen, regions + 1, 0)
    return mark_boundaries(image, label, color=(1, 1, 0), mode="inner")


def save_overlay_grid(tiles: Sequence[np.ndarray], path: Path, titles: Sequence[str]) -> None:
    plt = _pyplot()
    n = max(1, len(tiles))
    fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.4), squeeze=False)
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
