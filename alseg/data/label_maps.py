"""Per-image label maps on disk (stage-2 pseudo labels, sieve masks): 8-bit PNG files.

PNG is lossless, compresses label maps well and opens in any image viewer, so the maps a
run trained on can be looked at directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from alseg.atomic import atomic_write


def label_map_path(folder: Path, index: int) -> Path:
    return Path(folder) / f"{index:06d}.png"


def save_label_map(path: Path, labels: torch.Tensor | np.ndarray) -> None:
    """Write an (H, W) map of values in [0, 255] (e.g. classes, 255 = ignore) atomically."""
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim != 2 or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError(f"a label map must be (H, W) with values in [0, 255], got {arr.shape}")
    image = Image.fromarray(arr.astype(np.uint8))  # 2-D uint8: mode "L"
    atomic_write(Path(path), lambda f: image.save(f, format="PNG"))


def load_label_map(path: Path) -> torch.Tensor:
    """(H, W) long map written by ``save_label_map``."""
    with Image.open(path) as im:
        return torch.from_numpy(np.array(im, dtype=np.int64))
