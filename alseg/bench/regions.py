"""``alseg bench regions``: SLIC and SEEDS throughput on 1024x2048 images (the Cityscapes
size), through ``compute_regions`` as ``alseg regions`` runs it (worker processes, the
cache written, uint16 compressed). Images: scikit-image's bundled photographs resized to
1024x2048, so the superpixel algorithms see real image content."""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from alseg.bench.common import emit
from alseg.data.regions import RegionStats, compute_regions


def photos_1024x2048(n: int) -> list[np.ndarray]:
    from PIL import Image
    from skimage import data as photos

    sources = [photos.astronaut(), photos.chelsea(), photos.coffee(), photos.rocket()]
    return [
        np.asarray(Image.fromarray(sources[i % len(sources)]).resize((2048, 1024)))
        for i in range(n)
    ]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="alseg bench regions")
    p.add_argument("--images", type=int, default=8, help="1024x2048 images per method")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="2 images of 256x512")
    args = p.parse_args(argv)
    images = photos_1024x2048(2 if args.quick else args.images)
    if args.quick:
        images = [im[::4, ::4].copy() for im in images]
    H, W = images[0].shape[:2]
    methods = {"slic": {"n_segments": 2048, "compactness": 10.0}}
    try:
        import cv2  # noqa: F401

        methods["seeds"] = {
            "n_segments": 2048,
            "num_levels": 4,
            "prior": 2,
            "histogram_bins": 5,
            "iterations": 10,
        }
    except ImportError:
        emit("regions", method="seeds", skipped="opencv-contrib not installed (alseg[seeds])")
    for method, params in methods.items():
        with tempfile.TemporaryDirectory() as cache:
            stats = RegionStats()
            t0 = time.perf_counter()
            rs = compute_regions(
                images.__getitem__, len(images), method, params, f"bench-{H}x{W}", cache,
                args.workers, progress=False, stats=stats,
            )  # fmt: skip
            wall = time.perf_counter() - t0
        emit(
            "regions",
            method=method,
            size=f"{H}x{W}",
            images=len(images),
            workers=args.workers,
            regions_per_image=round(float(rs.num_regions.mean()), 1),
            images_per_s=round(len(images) / wall, 3),
            seconds=round(wall, 2),
        )
