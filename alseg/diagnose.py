"""Why a strategy does or does not beat random: what each round's selection contains and how
well the model that selected it knew its own errors.

For one run dir and each selecting round r (the model of round r - 1 chose round r's
regions), ``diagnose_run`` measures against the regions still unlabeled at that point:

* cost: region pixels per click (the area the answers cover), mean region size;
* label quality: purity, the share of a region's pixels of its dominant class (what a
  dominant-class answer gets right), pixel-weighted;
* content: the dominant ground-truth classes of the selected regions against those of the
  unlabeled pool (total-variation distance, share of the rare classes: those with less
  than ``rare_share`` of the pool's pixels);
* the selecting model: its pixel error on the selected regions and on the pool, the
  Spearman correlation between its per-region BvSB (p2 / p1, mean over the region) and its
  per-region error (does its uncertainty rank its mistakes?), and the expected calibration
  error of its top-1 confidence on the pool's pixels (15 equal-width bins).

A region is a base region of the run's region maps (merged queries of adaptive superpixels
count each of their base regions). The model is the stage-1 (acquisition) model; a void
output is left out (the first C outputs, as in evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

ECE_BINS = 15


def region_class_counts(
    maps: Any, masks: Any, num_images: int, offsets: np.ndarray, num_classes: int
) -> np.ndarray:
    """(R, C) pixel count of each ground-truth class in each region (void left out).

    Args:
        maps: image index -> (H, W) local region ids.
        masks: image index -> (H, W) class ids (>= C: void).
        offsets: (N + 1,) global id offsets of the region set.
    """
    out = np.zeros((int(offsets[-1]), num_classes), dtype=np.int64)
    for i in range(num_images):
        m = np.asarray(masks(i)).ravel()
        r = np.asarray(maps(i)).ravel().astype(np.int64)
        ok = m < num_classes
        n = int(offsets[i + 1] - offsets[i])
        counts = np.bincount(r[ok] * num_classes + m[ok], minlength=n * num_classes)
        out[offsets[i] : offsets[i + 1]] = counts.reshape(n, num_classes)
    return out


@dataclass
class PixelStats:
    """Per-region sums of one model's pool predictions, and its confidence histogram."""

    errors: np.ndarray  # (R,) pixels predicted wrong (valid pixels)
    valid: np.ndarray  # (R,) valid pixels
    bvsb: np.ndarray  # (R,) sum of p2 / p1 over all pixels
    pixels: np.ndarray  # (R,) all pixels
    bin_count: np.ndarray  # (R, B) valid pixels per confidence bin
    bin_conf: np.ndarray  # (R, B) sum of top-1 confidence per bin
    bin_correct: np.ndarray  # (R, B) correct pixels per bin


def pixel_stats(
    probs: torch.Tensor, mask: torch.Tensor, regions: torch.Tensor, num_regions: int
) -> PixelStats:
    """Region sums for one image: ``probs`` (C, H, W), ``mask`` (H, W) class ids (>= C:
    void), ``regions`` (H, W) local ids 0..num_regions-1."""
    C = probs.shape[0]
    top2 = probs.topk(2, dim=0).values  # (2, H, W)
    conf, pred = probs.max(dim=0)
    r = regions.reshape(-1).long()
    valid = (mask < C).reshape(-1)
    correct = (pred == mask).reshape(-1) & valid
    bins = (conf.reshape(-1) * ECE_BINS).long().clamp(max=ECE_BINS - 1)

    def add(values: torch.Tensor, where: torch.Tensor | None = None) -> np.ndarray:
        v = values.double() if where is None else values.double() * where
        return torch.zeros(num_regions, dtype=torch.float64).index_add_(0, r, v).numpy()

    def per_bin(values: torch.Tensor) -> np.ndarray:
        flat = torch.zeros(num_regions * ECE_BINS, dtype=torch.float64)
        flat.index_add_(0, r * ECE_BINS + bins, values.double() * valid)
        return flat.reshape(num_regions, ECE_BINS).numpy()

    return PixelStats(
        errors=add(valid & ~correct),
        valid=add(valid),
        bvsb=add((top2[1] / top2[0].clamp_min(1e-12)).reshape(-1)),
        pixels=add(torch.ones_like(r)),
        bin_count=per_bin(torch.ones_like(r)),
        bin_conf=per_bin(conf.reshape(-1)),
        bin_correct=per_bin(correct),
    )


def expected_calibration_error(count: np.ndarray, conf: np.ndarray, correct: np.ndarray) -> float:
    """ECE from per-bin sums: sum_b n_b / N * |accuracy_b - confidence_b| (in %)."""
    n = count.sum()
    if n == 0:
        return float("nan")
    nz = count > 0
    gap = np.abs(correct[nz] / count[nz] - conf[nz] / count[nz])
    return float(100 * (count[nz] / n * gap).sum())


def total_variation(a: np.ndarray, b: np.ndarray) -> float:
    """Half the L1 distance between two histograms, each normalised to sum 1."""
    return float(0.5 * np.abs(a / max(a.sum(), 1) - b / max(b.sum(), 1)).sum())


def selection_row(
    chosen: np.ndarray,
    pool: np.ndarray,
    counts: np.ndarray,
    clicks: float,
    stats: PixelStats,
    rare: list[int],
) -> dict[str, float]:
    """The measures of one selection: ``chosen`` and ``pool`` (unlabeled before it) are
    (R,) bool, ``counts`` (R, C) ground-truth class pixels per region."""
    from scipy.stats import spearmanr

    size = counts.sum(1)
    dom = counts.argmax(1)
    C = counts.shape[1]
    sel_hist = np.bincount(dom[chosen & (size > 0)], minlength=C)
    pool_hist = np.bincount(dom[pool & (size > 0)], minlength=C)
    unl = pool & (stats.valid > 0)
    rho = spearmanr(stats.bvsb[unl] / stats.pixels[unl], stats.errors[unl] / stats.valid[unl])
    sizes = stats.pixels
    return {
        "regions": int(chosen.sum()),
        "px_per_click": float(sizes[chosen].sum() / clicks) if clicks else float("nan"),
        "size_sel": float(sizes[chosen].mean()),
        "size_pool": float(sizes[pool].mean()),
        "purity_sel": float(100 * counts[chosen].max(1).sum() / max(size[chosen].sum(), 1)),
        "purity_pool": float(100 * counts[pool].max(1).sum() / max(size[pool].sum(), 1)),
        "error_sel": float(100 * stats.errors[chosen].sum() / max(stats.valid[chosen].sum(), 1)),
        "error_pool": float(100 * stats.errors[pool].sum() / max(stats.valid[pool].sum(), 1)),
        "spearman_bvsb_error": float(rho.statistic),
        "ece_pool": expected_calibration_error(
            stats.bin_count[pool].sum(0),
            stats.bin_conf[pool].sum(0),
            stats.bin_correct[pool].sum(0),
        ),
        "class_tv": total_variation(sel_hist, pool_hist),
        "rare_sel": float(100 * sel_hist[rare].sum() / max(sel_hist.sum(), 1)),
        "rare_pool": float(100 * pool_hist[rare].sum() / max(pool_hist.sum(), 1)),
    }


def model_pool_stats(model: Any, dataset: Any, regions: Any, batch: int = 16) -> PixelStats:
    """``PixelStats`` of ``model`` (eval mode, first C outputs) over every pool image."""
    C = dataset.num_classes
    parts: list[PixelStats] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
            logits = model(torch.stack([it["image"] for it in items]))[:, :C]
            probs = logits.float().softmax(dim=1)
            for it, p in zip(items, probs):
                i = it["index"]
                n = int(regions.num_regions[i])
                parts.append(pixel_stats(p, it["mask"], regions.map_tensor(i), n))
    fields = PixelStats.__dataclass_fields__
    return PixelStats(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})


def diagnose_run(run_dir: Path, rare_share: float = 0.05) -> list[dict[str, Any]]:
    """One row per selecting round of the run in ``run_dir`` (see the module docstring)."""
    from rich.console import Console

    from alseg.build import build_loop
    from alseg.config import load_run_config
    from alseg.data.labels import LabelStore
    from alseg.report import setting_of

    cfg = load_run_config(run_dir)
    loop = build_loop(cfg, run_dir, True, Console(quiet=True), False, read_only=True)
    dm, rundir = loop.dm, loop.rundir
    train: Any = dm.train_set  # a data set of the sample contract
    regions = dm.regions
    C = train.num_classes
    state = rundir.read_state()
    last = state.round
    store = LabelStore.from_file(rundir.labels_path(last), regions.total, C)
    counts = region_class_counts(
        lambda i: regions.maps[i], lambda i: train.mask(i).numpy(), len(train), regions.offsets, C
    )
    share = counts.sum(0) / max(counts.sum(), 1)
    rare = np.flatnonzero(share < rare_share).tolist()
    metrics = {int(m["round"]): m for m in rundir.read_metrics()}
    rows = []
    for r in range(1, last + 1):
        if not rundir.checkpoint_path(r - 1).is_file():
            continue  # the run kept fewer checkpoints (active.keep_checkpoints)
        stats = model_pool_stats(loop.load_model(r - 1), train, regions)
        chosen = store.round == r
        pool = (store.round < 0) | (store.round >= r)
        row = selection_row(chosen, pool, counts, store.spent(r), stats, rare)
        rows.append(
            {
                "run": run_dir.name,
                "setting": setting_of(run_dir),
                "seed": int(cfg.seed),
                "round": r,
                "model_mIoU": float(metrics[r - 1]["mIoU"]),
                **row,
                "rare_classes": " ".join(train.class_names[c] for c in rare),
            }
        )
    return rows
