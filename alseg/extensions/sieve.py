"""Label sieving of adaptive superpixels (``sieve.enabled``; Kim et al., ICCV 2023;
docs/methods.md): in each labeled (merged) region of at least ``min_size`` pixels, drop
the pixels whose confidence for the region's answered class is below the knee of the
region's sorted confidences.

As the official code, every round re-sieves every labeled region of every round (round 0's
base regions included) with the newest model: once round r's answers are known, a
prediction pass with the model of round r - 1 over the images of all labels so far writes
a drop mask per image (``sieve/round_XX/<image>.png``, 1 = drop) before the labels are
committed, and round r trains on those masks only (the target step ``SieveMasks``). The kept
and dropped pixels' accuracy against ground truth is recorded, never used for training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alseg.acquisition.adaptive import knee_threshold
from alseg.acquisition.base import Selection
from alseg.data.label_maps import label_map_path, load_label_map, save_label_map
from alseg.data.labels import NO_CLASS, Annotations
from alseg.extensions.base import Extension, RoundContext
from alseg.extensions.maps import MapWriter, pct, write_maps
from alseg.models.segmentation import PredictOutputs

KIND = "sieve"
STAT_KEYS = ("sieve_kept_acc", "sieve_dropped_acc", "sieve_dropped_pct", "sieve_regions")


@dataclass(frozen=True)
class SieveMasks:
    """A target step (``LabeledView.set_step``): the labeled pixels that the masks in
    ``folders`` ((H, W), 1 = drop) sieved out become ``ignore_index``."""

    folders: tuple[Path, ...]
    ignore_index: int = 255
    replaces: bool = False

    def __call__(self, index: int, target: torch.Tensor | None) -> torch.Tensor:
        assert target is not None
        for folder in self.folders:
            path = label_map_path(folder, index)
            if path.exists():
                target = target.masked_fill(load_label_map(path) > 0, self.ignore_index)
        return target


@dataclass
class SieveConfig:
    """Args:
    min_size: merged regions smaller than this keep all pixels (512 in the paper) ...
    reference_area: ... at this image area (1024 x 2048); the threshold scales with the
        image's area, so small images sieve proportionally small regions ...
    min_pixels: ... but never below this (the knee needs points to be found).
    step: subsampling of the knee search (every n / step values).
    scope: "all": every round re-sieves every label so far with the newest model (the
        official code); "new": each round sieves only its own new labels, once, and the
        earlier rounds' masks stay (an ablation of the timing).
    scale: the model predicts the image resized by this factor and each pixel takes the
        confidence of its cell (``scaled_confidence``); the official code: 0.5.
    """

    min_size: int = 512
    reference_area: int = 1024 * 2048
    min_pixels: int = 20
    step: int = 20
    scope: str = "all"
    scale: float = 1.0

    def threshold(self, area: int) -> int:
        return max(self.min_pixels, round(self.min_size * area / self.reference_area))


def sieve_pixels(
    confidence: torch.Tensor, groups: torch.Tensor, min_pixels: int, step: int = 20
) -> torch.Tensor:
    """Pixels to drop from the labels of one image: in each group (labeled merged region)
    of at least ``min_pixels`` pixels, those whose confidence for the group's label is below
    the knee of the group's sorted confidences (no knee: keep all).

    Args:
        confidence: (H, W) model confidence for each pixel's answered label.
        groups: (H, W) long group id of each pixel, -1 outside the sieved groups.
        min_pixels: smaller groups keep every pixel.
        step: subsampling of the knee search (``knee_threshold``).
    Returns:
        (H, W) bool, True = drop.
    """
    drop = torch.zeros_like(groups, dtype=torch.bool)
    ids, counts = torch.unique(groups[groups >= 0], return_counts=True)
    for g in ids[counts >= min_pixels].tolist():
        px = groups == g
        t = knee_threshold(confidence[px], step)
        drop |= px & (confidence < t)
    return drop


@dataclass
class _ImageAnswers:
    """One image's part of a round's answers: per pixel the query (group) and the answered
    class (-1 where not answered this round), and the groups large enough to sieve."""

    groups: torch.Tensor  # (H, W) long
    classes: torch.Tensor  # (H, W) long
    big: torch.Tensor  # (G,) long group ids
    threshold: int


def image_answers(ann: Annotations, regions: Any, cfg: SieveConfig) -> dict[int, _ImageAnswers]:
    """The images of ``ann`` that hold a group of at least the sieving threshold."""
    groups = ann.query if ann.query is not None else ann.region_ids
    usable = ann.classes != NO_CLASS
    images, local = regions.split_ids(ann.region_ids)
    out: dict[int, _ImageAnswers] = {}
    for img in np.unique(images[usable]).tolist():
        sel = (images == img) & usable
        rmap = regions.map_tensor(img)
        g_lut = torch.full((int(regions.num_regions[img]),), -1, dtype=torch.long)
        c_lut = g_lut.clone()
        g_lut[local[sel]] = torch.from_numpy(groups[sel])
        c_lut[local[sel]] = torch.from_numpy(ann.classes[sel])
        gmap, cmap = g_lut[rmap], c_lut[rmap]
        thr = cfg.threshold(rmap.numel())
        ids, counts = torch.unique(gmap[gmap >= 0], return_counts=True)
        big = ids[counts >= thr]
        if big.numel():
            out[img] = _ImageAnswers(gmap, cmap, big, thr)
    return out


def scaled_confidence(probs: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
    """(C, H, W) class probabilities at (H, W) ``size`` from ``probs`` (C, h, w) predicted on
    the image resized by ``scale``: pixel (y, x) takes the cell (floor(y s), floor(x s)),
    as the official code reads ``softmax_output[(y/2).astype(int), (x/2).astype(int)]``."""
    H, W = size
    h, w = probs.shape[-2:]
    ys = (torch.arange(H) * scale).long().clamp(max=h - 1)
    xs = (torch.arange(W) * scale).long().clamp(max=w - 1)
    return probs[:, ys][:, :, xs]


class SieveWriter(MapWriter):
    """Drop masks of the images of a round's answers. Counts: kept pixels whose ground
    truth is the answer, kept pixels, the same for dropped ones, sieved queries (void
    ground truth left out)."""

    def __init__(
        self, folder: Path, answers: dict[int, _ImageAnswers], loop: RoundContext, cfg: SieveConfig
    ) -> None:
        super().__init__(PredictOutputs(), folder, 5)
        self.answers, self.cfg = answers, cfg
        self.mask_fn, self.ignore = loop.dm.labeled.mask_fn, loop.dm.labeled.ignore_index
        self.module: Any = None

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_predict_start(trainer, pl_module)
        self.module = pl_module

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        if self.cfg.scale != 1.0:  # the official code: the model sees the half-size image
            image = batch["image"]
            H, W = image.shape[-2:]
            small = (int(H * self.cfg.scale), int(W * self.cfg.scale))
            with torch.no_grad():
                x = torch.nn.functional.interpolate(
                    image, size=small, mode="bilinear", align_corners=False
                )
                low = torch.softmax(self.module(x).float(), 1).cpu()
            probs = torch.stack([scaled_confidence(p, (H, W), self.cfg.scale) for p in low])
        else:
            probs = torch.softmax(outputs.float(), 1).cpu()
        for b, img in enumerate(batch["index"].tolist()):
            a = self.answers[img]
            conf = probs[b].gather(0, a.classes.clamp_min(0)[None])[0]
            drop = sieve_pixels(conf, a.groups, a.threshold, self.cfg.step)
            save_label_map(label_map_path(self.folder, img), drop.to(torch.uint8))
            gt = self.mask_fn(img)
            sieved = torch.isin(a.groups, a.big) & (gt != self.ignore)
            ok = gt == a.classes
            self.counts += torch.tensor(
                [
                    int((sieved & ~drop & ok).sum()),
                    int((sieved & ~drop).sum()),
                    int((sieved & drop & ok).sum()),
                    int((sieved & drop).sum()),
                    a.big.numel(),
                ],
                dtype=torch.float64,
            )

    def stats(self) -> dict[str, float]:
        kept_ok, kept, dropped_ok, dropped, queries = self.counts.tolist()
        return {
            "sieve_kept_acc": pct(kept_ok, kept),
            "sieve_dropped_acc": pct(dropped_ok, dropped),
            "sieve_dropped_pct": pct(dropped, kept + dropped),
            "sieve_regions": float(queries),
        }


def all_answers(store: Any, new: Annotations) -> Annotations:
    """The dominant answers of every region labeled so far (``store``) and of ``new``, with
    their queries (merged regions: the root; else the region itself)."""
    old = np.flatnonzero(store.labeled_mask())
    ids = np.concatenate([old, new.region_ids])
    classes = np.concatenate([store.cls[old].astype(np.int64), new.classes])
    own = new.query if new.query is not None else new.region_ids
    query = np.concatenate([np.where(store.query[old] >= 0, store.query[old], old), own])
    return Annotations(ids, "dominant", classes, np.zeros(ids.size), query=query)


class Sieving(Extension):
    """Re-sieves every label of every round with the newest model, each round (``scope``
    "new": sieves each round's new labels once)."""

    name = "sieve"

    def __init__(self, cfg: SieveConfig) -> None:
        self.cfg = cfg
        self.stats: dict[str, float] = {}
        self.folders: list[Path] = []

    def setup(self, loop: RoundContext) -> None:
        super().setup(loop)
        self.folders, self.stats = [], {}

    def after_select(self, r: int, ann: Annotations, selection: Selection) -> None:
        if r == 0:
            return
        loop = self.loop
        labels = all_answers(loop.store, ann) if self.cfg.scope == "all" else ann
        answers = image_answers(labels, loop.dm.regions, self.cfg)
        loop.tracker.phase(r - 1, "sieve", len(answers))
        _, self.stats = write_maps(
            loop,
            KIND,
            r,
            loop.stage1_model(r - 1),
            np.array(sorted(answers), dtype=np.int64),
            lambda f: SieveWriter(f, answers, loop, self.cfg),
        )
        self._use_masks(r)

    def on_resume(self, r: int, phase: str) -> None:
        self.stats = self.loop.rundir.folder_stats(KIND, r) if r > 0 else {}
        self._use_masks(r)

    def _use_masks(self, r: int) -> None:
        """Train on the drop masks in force at round ``r``: scope all, round r's (the newest
        sieve replaces the earlier ones); new, those of rounds 1..r together."""
        rounds = [r] if self.cfg.scope == "all" else range(1, r + 1)
        rundir = self.loop.rundir
        self.folders = [rundir.round_folder(KIND, k) for k in rounds if k > 0]
        labeled = self.loop.dm.labeled
        labeled.set_step(KIND, SieveMasks(tuple(self.folders), labeled.ignore_index))

    def metrics_row(self, r: int) -> dict[str, float]:
        stats = self.stats if r > 0 else {}
        return {k: stats.get(k, float("nan")) for k in STAT_KEYS}
