"""Region (superpixel) maps: computed once per data set and parameters, cached on disk.

A region map is an integer array (H, W) with ids 0..R_i-1 for image i. A ``RegionSet``
holds the maps of a whole split plus the offsets that give every region a stable global
id ``offsets[i] + region_id`` (DESIGN.md §3).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

RegionMethod = Literal["slic", "grid"]
METHODS: tuple[str, ...] = ("slic", "grid")


def relabel_consecutive(regions: np.ndarray) -> np.ndarray:
    """Map the ids of a region map to 0..R-1 in order of first appearance in sorted ids."""
    _, inverse = np.unique(regions, return_inverse=True)
    return inverse.reshape(regions.shape).astype(np.int32)


def slic_regions(image: np.ndarray, n_segments: int, compactness: float) -> np.ndarray:
    """SLIC superpixels (scikit-image) of one (H, W, 3) uint8 image -> (H, W) int32."""
    from skimage.segmentation import slic

    seg = slic(
        image, n_segments=n_segments, compactness=compactness, start_label=0, channel_axis=-1
    )
    return relabel_consecutive(seg)


def grid_regions(height: int, width: int, cell: int) -> np.ndarray:
    """Square cells of ``cell`` pixels (the last row/column may be smaller) -> (H, W) int32."""
    rows = np.arange(height) // cell
    cols = np.arange(width) // cell
    ncols = (width + cell - 1) // cell
    return (rows[:, None] * ncols + cols[None, :]).astype(np.int32)


def compute_region_map(image: np.ndarray, method: str, params: dict[str, Any]) -> np.ndarray:
    """Region map of one (H, W, 3) uint8 image with the named method."""
    if method == "slic":
        return slic_regions(image, int(params["n_segments"]), float(params["compactness"]))
    if method == "grid":
        return grid_regions(image.shape[0], image.shape[1], int(params["cell"]))
    raise ValueError(f"region method {method!r} is not valid; choose one of {list(METHODS)}")


@dataclass
class RegionSet:
    """Region maps of one split.

    Attributes:
        maps: one (H_i, W_i) int32 array per image, ids 0..R_i-1.
        num_regions: (N,) int64, R_i.
        offsets: (N + 1,) int64, prefix sums of ``num_regions``: the global id of region r
            of image i is ``offsets[i] + r``.
    """

    maps: list[np.ndarray]

    def __post_init__(self) -> None:
        self.num_regions = np.array([int(m.max()) + 1 for m in self.maps], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.num_regions)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def total(self) -> int:
        """Number of regions over all images."""
        return int(self.offsets[-1])

    def map_tensor(self, index: int) -> torch.Tensor:
        """(H, W) int64 region map of image ``index``."""
        return torch.from_numpy(self.maps[index].astype(np.int64))

    def image_of(self, global_ids: np.ndarray) -> np.ndarray:
        """Image index of each global region id."""
        return np.searchsorted(self.offsets, global_ids, side="right") - 1

    def split_ids(self, global_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global ids -> (image indices, local region ids)."""
        images = self.image_of(np.asarray(global_ids, dtype=np.int64))
        return images, np.asarray(global_ids) - self.offsets[images]

    def region_sizes(self) -> np.ndarray:
        """(total,) int64 pixel count of every region."""
        return np.concatenate(
            [np.bincount(m.ravel(), minlength=r) for m, r in zip(self.maps, self.num_regions)]
        ).astype(np.int64)


def _cache_key(fingerprint: str, method: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"data": fingerprint, "method": method, "params": params}, sort_keys=True)
    return f"{method}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def save_region_set(path: Path, regions: RegionSet) -> None:
    """Compressed .npz of uint16 maps (atomic: temp file + rename)."""
    if regions.num_regions.max(initial=0) > np.iinfo(np.uint16).max + 1:
        raise ValueError("more than 65,536 regions in one image cannot be stored as uint16")
    shapes = np.array([m.shape for m in regions.maps], dtype=np.int64).reshape(-1, 2)
    flat = np.concatenate([m.ravel() for m in regions.maps]).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, shapes=shapes, flat=flat)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_region_set(path: Path) -> RegionSet:
    """Inverse of ``save_region_set``; raises ValueError naming the file if it is corrupt."""
    try:
        with np.load(path, allow_pickle=False) as z:
            shapes, flat = z["shapes"], z["flat"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"region cache {path} is unreadable ({e}); delete it to recompute") from e
    maps, start = [], 0
    for h, w in shapes:
        maps.append(flat[start : start + h * w].reshape(h, w).astype(np.int32))
        start += h * w
    if start != flat.size:
        raise ValueError(f"region cache {path} is inconsistent; delete it to recompute")
    return RegionSet(maps)


def _work(args: tuple[np.ndarray, str, dict[str, Any]]) -> np.ndarray:
    image, method, params = args
    return compute_region_map(image, method, params)


def compute_regions(
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    num_images: int,
    method: str,
    params: dict[str, Any],
    fingerprint: str,
    cache_dir: str | Path | None,
    num_workers: int = 2,
    progress: bool = True,
) -> RegionSet:
    """Region maps of a data set, from the cache when present.

    Args:
        images: (H, W, 3) uint8 arrays, or a function ``index -> array``.
        num_images: number of images.
        method: "slic" | "grid".
        params: method parameters (slic: n_segments, compactness; grid: cell).
        fingerprint: identifies the pixels of the data set (part of the cache key).
        cache_dir: folder of the cache; None disables caching.
        num_workers: worker processes (<= 1: in-process).
        progress: show a progress bar.
    """
    if method not in METHODS:
        raise ValueError(f"region method {method!r} is not valid; choose one of {list(METHODS)}")
    path = None
    if cache_dir is not None:
        path = (
            Path(cache_dir)
            / "regions"
            / f"{fingerprint}-{_cache_key(fingerprint, method, params)}.npz"
        )
        if path.exists():
            return load_region_set(path)

    get = images if callable(images) else images.__getitem__
    jobs = ((get(i), method, params) for i in range(num_images))
    maps: list[np.ndarray] = []
    from rich.progress import Progress

    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"regions ({method}, {num_images} images)", total=num_images)
        if num_workers > 1 and num_images >= 4 * num_workers:
            ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
            with ctx.Pool(num_workers) as pool:
                for m in pool.imap(_work, jobs, chunksize=8):
                    maps.append(m)
                    bar.advance(task)
        else:
            for job in jobs:
                maps.append(_work(job))
                bar.advance(task)
    regions = RegionSet(maps)
    if path is not None:
        save_region_set(path, regions)
    return regions


def region_adjacency(regions: torch.Tensor) -> torch.Tensor:
    """Unique undirected pairs of 4-neighbouring regions.

    Args:
        regions: (H, W) long region ids.
    Returns:
        (E, 2) long pairs (a, b) with a < b, sorted; vectorised (no loop over pixels).
    """
    r = regions.long()
    n = int(r.max()) + 1 if r.numel() else 1
    # Only pixels at a region boundary make pairs: filter before building anything big.
    right = r[:, :-1] != r[:, 1:]
    down = r[:-1, :] != r[1:, :]
    a = torch.cat([r[:, :-1][right], r[:-1, :][down]])
    b = torch.cat([r[:, 1:][right], r[1:, :][down]])
    key = torch.unique(torch.minimum(a, b) * n + torch.maximum(a, b))
    return torch.stack([key // n, key % n], 1)
