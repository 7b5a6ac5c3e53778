"""Region (superpixel) maps: computed once per data set and parameters, cached on disk.

A region map is an integer array (H, W) with ids 0..R_i-1 for image i. A ``RegionSet``
holds the maps of a whole split plus the offsets that give every region a stable global
id ``offsets[i] + region_id`` (docs/design.md).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alseg.atomic import atomic_write

METHODS: tuple[str, ...] = ("slic", "seeds", "grid", "image")
CHUNK = 64  # images per cache file: the unit of resuming
MAX_IN_MEMORY_MB = 1024  # larger region sets are read from the cache per image


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


def seeds_regions(
    image: np.ndarray,
    n_segments: int,
    num_levels: int = 4,
    prior: int = 2,
    histogram_bins: int = 5,
    iterations: int = 10,
) -> np.ndarray:
    """SEEDS superpixels (OpenCV contrib ``ximgproc``; ``pip install alseg[seeds]``) of one
    (H, W, 3) uint8 RGB image, on its HSV values as in OpenCV's sample -> (H, W) int32."""
    try:
        import cv2

        create = cv2.ximgproc.createSuperpixelSEEDS
    except (ImportError, AttributeError):
        raise ImportError(
            "regions.method=seeds needs OpenCV contrib: pip install 'alseg[seeds]' "
            "(opencv-contrib-python-headless); or use regions.method=slic"
        ) from None
    H, W = image.shape[:2]
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    seeds = create(W, H, 3, int(n_segments), int(num_levels), int(prior), int(histogram_bins))
    seeds.iterate(hsv, int(iterations))
    return relabel_consecutive(seeds.getLabels())


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
    if method == "seeds":
        return seeds_regions(image, **params)
    if method == "grid":
        return grid_regions(image.shape[0], image.shape[1], int(params["cell"]))
    if method == "image":  # the whole image is one region (image-level labels)
        return np.zeros(image.shape[:2], dtype=np.int32)
    raise ValueError(f"region method {method!r} is not valid; choose one of {list(METHODS)}")


class ChunkedMaps(Sequence[np.ndarray]):
    """Region maps read from the cache files one image at a time (large data sets)."""

    def __init__(self, folder: Path, num_images: int) -> None:
        self.folder, self.num_images = folder, num_images

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not 0 <= index < self.num_images:
            raise IndexError(index)
        c, j = divmod(index, CHUNK)
        with np.load(_chunk_path(self.folder, c), allow_pickle=False) as z:
            return z[f"m{j:05d}"].astype(np.int32)


class RegionSet:
    """Region maps of one split.

    Attributes:
        maps: one (H_i, W_i) int32 array per image, ids 0..R_i-1 (in memory, or a
            ``ChunkedMaps`` that reads them from the cache).
        num_regions: (N,) int64, R_i (computed from the maps if not given).
        offsets: (N + 1,) int64, prefix sums of ``num_regions``: the global id of region r
            of image i is ``offsets[i] + r``.
    """

    def __init__(
        self,
        maps: Sequence[np.ndarray],
        num_regions: np.ndarray | None = None,
        sizes: np.ndarray | None = None,
    ) -> None:
        self.maps = maps
        if num_regions is None:
            num_regions = np.array([int(m.max()) + 1 for m in maps], dtype=np.int64)
        self.num_regions: np.ndarray = np.asarray(num_regions, dtype=np.int64)
        self.offsets: np.ndarray = np.concatenate([[0], np.cumsum(self.num_regions)]).astype(
            np.int64
        )
        self._sizes = sizes

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
        if self._sizes is None:
            self._sizes = _sizes(self.maps, self.num_regions)
        return self._sizes


def _sizes(maps: Sequence[np.ndarray], num_regions: np.ndarray) -> np.ndarray:
    if not len(maps):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(
        [np.bincount(m.ravel(), minlength=r) for m, r in zip(maps, num_regions)]
    ).astype(np.int64)


def _cache_key(fingerprint: str, method: str, params: dict[str, Any]) -> str:
    blob = json.dumps({"data": fingerprint, "method": method, "params": params}, sort_keys=True)
    return f"{method}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


def _chunk_path(folder: Path, chunk: int) -> Path:
    return folder / f"chunk-{chunk:05d}.npz"


def save_chunk(path: Path, maps: Sequence[np.ndarray]) -> None:
    """One cache file: compressed uint16 maps + their region counts and sizes (atomic)."""
    num_regions = np.array([int(m.max()) + 1 for m in maps], dtype=np.int64)
    if num_regions.max(initial=0) > np.iinfo(np.uint16).max + 1:
        raise ValueError("more than 65,536 regions in one image cannot be stored as uint16")
    arrays: dict[str, np.ndarray] = {f"m{j:05d}": m.astype(np.uint16) for j, m in enumerate(maps)}
    arrays["num_regions"] = num_regions
    arrays["sizes"] = _sizes(maps, num_regions)
    arrays["shapes"] = np.array([m.shape for m in maps], dtype=np.int64).reshape(-1, 2)
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))  # type: ignore[arg-type]


def read_chunk(path: Path, with_maps: bool) -> dict[str, Any]:
    """Inverse of ``save_chunk``; raises ValueError naming the file if it is corrupt."""
    try:
        with np.load(path, allow_pickle=False) as z:
            out: dict[str, Any] = {k: z[k] for k in ("num_regions", "sizes", "shapes")}
            if with_maps:
                out["maps"] = [z[f"m{j:05d}"].astype(np.int32) for j in range(len(out["shapes"]))]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"region cache {path} is unreadable ({e}); delete it to recompute") from e
    return out


def load_region_set(folder: Path, num_images: int, max_memory_mb: float) -> RegionSet:
    """The region set of a complete cache folder: in memory, or read per image when its
    int32 maps would take more than ``max_memory_mb``."""
    chunks = [read_chunk(_chunk_path(folder, c), False) for c in range(-(-num_images // CHUNK))]
    shapes = np.concatenate([c["shapes"] for c in chunks])
    if len(shapes) != num_images:
        raise ValueError(f"region cache {folder} holds {len(shapes)} maps, not {num_images}")
    num_regions = np.concatenate([c["num_regions"] for c in chunks])
    sizes = np.concatenate([c["sizes"] for c in chunks])
    if 4 * float(np.prod(shapes, axis=1).sum()) / 2**20 > max_memory_mb:
        return RegionSet(ChunkedMaps(folder, num_images), num_regions, sizes)
    maps = [m for c in range(len(chunks)) for m in read_chunk(_chunk_path(folder, c), True)["maps"]]
    return RegionSet(maps, num_regions, sizes)


def _work(args: tuple[np.ndarray, str, dict[str, Any]]) -> np.ndarray:
    image, method, params = args
    return compute_region_map(image, method, params)


@dataclass
class RegionStats:
    """What ``compute_regions`` did: images computed now (not read from the cache), seconds."""

    computed: int = 0
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else float("nan")


def compute_regions(
    images: Sequence[np.ndarray] | Callable[[int], np.ndarray],
    num_images: int,
    method: str,
    params: dict[str, Any],
    fingerprint: str,
    cache_dir: str | Path | None,
    num_workers: int = 2,
    progress: bool = True,
    max_memory_mb: float = MAX_IN_MEMORY_MB,
    stats: RegionStats | None = None,
) -> RegionSet:
    """Region maps of a data set, from the cache when present.

    The cache is a folder of files of ``CHUNK`` images each, written as they complete: a
    killed computation resumes at the first missing file.

    Args:
        images: (H, W, 3) uint8 arrays, or a function ``index -> array``.
        num_images: number of images.
        method: "slic" | "seeds" | "grid".
        params: method parameters (slic: n_segments, compactness; seeds: n_segments,
            num_levels, prior, histogram_bins, iterations; grid: cell).
        fingerprint: identifies the pixels of the data set (part of the cache key).
        cache_dir: folder of the cache; None disables caching.
        num_workers: worker processes (<= 1: in-process).
        progress: show a progress bar.
        max_memory_mb: above this, maps stay on disk and are read per image.
        stats: filled with the number of images computed and the time it took.
    """
    if method not in METHODS:
        raise ValueError(f"region method {method!r} is not valid; choose one of {list(METHODS)}")
    if method == "seeds":
        seeds_regions(np.zeros((8, 8, 3), np.uint8), 4)  # fail now if OpenCV contrib is missing
    stats = stats if stats is not None else RegionStats()
    folder = None
    if cache_dir is not None:
        folder = (
            Path(cache_dir) / "regions" / f"{fingerprint}-{_cache_key(fingerprint, method, params)}"
        )
    get = images if callable(images) else images.__getitem__
    n_chunks = -(-num_images // CHUNK)
    todo = [c for c in range(n_chunks) if folder is None or not _chunk_path(folder, c).exists()]
    done_images = num_images - sum(min(CHUNK, num_images - c * CHUNK) for c in todo)
    t0 = time.perf_counter()
    maps = _compute_chunks(
        get, num_images, method, params, folder, todo, done_images, num_workers, progress
    )
    stats.computed += num_images - done_images
    stats.seconds += time.perf_counter() - t0
    if folder is None:
        return RegionSet([m for c in range(n_chunks) for m in maps[c]])
    return load_region_set(folder, num_images, max_memory_mb)


def _compute_chunks(
    get: Callable[[int], np.ndarray],
    num_images: int,
    method: str,
    params: dict[str, Any],
    folder: Path | None,
    todo: list[int],
    done_images: int,
    num_workers: int,
    progress: bool,
) -> dict[int, list[np.ndarray]]:
    """Compute the chunks ``todo`` (worker processes, progress bar); each is saved to the
    cache folder as it completes, or returned when there is no cache."""
    from rich.progress import Progress

    maps: dict[int, list[np.ndarray]] = {}
    with Progress(transient=True, disable=not progress or not todo) as bar:
        task = bar.add_task(
            f"regions ({method}, {num_images} images)", total=num_images, completed=done_images
        )
        pool = None
        if num_workers > 1 and num_images - done_images >= 4 * num_workers:
            ctx = mp.get_context("fork") if hasattr(os, "fork") else mp.get_context()
            pool = ctx.Pool(num_workers)
        try:
            for c in todo:
                idx = range(c * CHUNK, min((c + 1) * CHUNK, num_images))
                jobs = ((get(i), method, params) for i in idx)
                it = pool.imap(_work, jobs, chunksize=4) if pool else map(_work, jobs)
                chunk = []
                for m in it:
                    chunk.append(m)
                    bar.advance(task)
                if folder is not None:
                    save_chunk(_chunk_path(folder, c), chunk)
                else:
                    maps[c] = chunk
        finally:
            if pool is not None:
                pool.terminate()
    return maps


def region_adjacency(regions: torch.Tensor) -> torch.Tensor:
    """Unique undirected pairs of 4-neighbouring regions.

    Args:
        regions: (H, W) long region ids, or (B, H, W) with ids unique across the batch
            (pixels of different images are never neighbours).
    Returns:
        (E, 2) long pairs (a, b) with a < b, sorted; vectorised (no loop over pixels).
    """
    r = regions.long()
    n = int(r.max()) + 1 if r.numel() else 1
    # Only pixels at a region boundary make pairs: filter before building anything big.
    right = r[..., :, :-1] != r[..., :, 1:]
    down = r[..., :-1, :] != r[..., 1:, :]
    a = torch.cat([r[..., :, :-1][right], r[..., :-1, :][down]])
    b = torch.cat([r[..., :, 1:][right], r[..., 1:, :][down]])
    key = torch.unique(torch.minimum(a, b) * n + torch.maximum(a, b))
    return torch.stack([key // n, key % n], 1)
