"""``alseg data check``: read every image and mask of a data set, report what is wrong
(each problem names its file) and the class frequencies of every split."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alseg.data.datasets import DataError


@dataclass
class SplitReport:
    """Pixel counts per class (+ ignore), image sizes and the problems found in one split."""

    name: str
    images: int
    class_pixels: np.ndarray
    ignore_pixels: int = 0
    sizes: set[tuple[int, int]] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    @property
    def total_pixels(self) -> int:
        return int(self.class_pixels.sum()) + self.ignore_pixels


def check_split(name: str, dataset: Any, progress: bool = True) -> SplitReport:
    """Load every sample of ``dataset``; errors are collected, not raised."""
    from rich.progress import track

    C = dataset.num_classes
    problems = list(getattr(dataset, "problems", []))  # pairs left out when the split opened
    report = SplitReport(name, len(dataset) + len(problems), np.zeros(C, dtype=np.int64))
    report.errors += problems
    for i in track(range(len(dataset)), f"checking {name}", disable=not progress, transient=True):
        try:
            item = dataset[i]
        except DataError as e:
            report.errors.append(str(e))
            continue
        mask = item["mask"].numpy()
        report.sizes.add((int(mask.shape[0]), int(mask.shape[1])))
        valid = mask != dataset.ignore_index
        report.class_pixels += np.bincount(mask[valid], minlength=C)[:C]
        report.ignore_pixels += int((~valid).sum())
    return report


def format_reports(reports: list[SplitReport], class_names: tuple[str, ...]) -> str:
    """A plain-text table: one row per class, one column per split (share of pixels, %)."""
    lines = []
    for r in reports:
        sizes = sorted(r.sizes)
        shown = ", ".join(f"{h}x{w}" for h, w in sizes[:3]) + (" ..." if len(sizes) > 3 else "")
        lines.append(
            f"{r.name}: {r.images} images, sizes (HxW) {shown or '-'}, {len(r.errors)} problem(s)"
        )
    width = max(len(n) for n in (*class_names, "ignore"))
    header = f"{'class':<{width}}  " + "  ".join(f"{r.name:>8}" for r in reports)
    lines += ["", "pixel share (%)", header]
    for c, name in enumerate((*class_names, "ignore")):
        cells = []
        for r in reports:
            n = r.ignore_pixels if c == len(class_names) else int(r.class_pixels[c])
            cells.append(f"{100 * n / max(r.total_pixels, 1):8.2f}")
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    for r in reports:
        absent = [class_names[c] for c in np.flatnonzero(r.class_pixels == 0)]
        if absent and r.images:
            lines.append(f"note: {r.name} has no pixel of: {', '.join(absent)}")
    for r in reports:
        lines += [f"error: {e}" for e in r.errors]
    return "\n".join(lines)
