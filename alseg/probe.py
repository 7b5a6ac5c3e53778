"""What a representation carries before the first label: a linear probe on region embeddings.

Each pool region is embedded as the cold-start strategies embed it (``typiclust``,
``probcover``: the mean of the encoder's deepest features over the region, L2-normalised)
and labeled with its dominant ground-truth class. A multinomial logistic regression is
fitted on the regions of a fixed half of the pool's images and scored on the regions of
the other half:

* pixel accuracy = sum over scored regions of (pixels of the predicted class) / valid
  pixels: what a dominant-label annotator's region answers, predicted, would get right;
* region accuracy (the dominant class predicted) and mean class accuracy over regions.

The same probe on the encoder of a freshly initialised model (``model.encoder_weights``
null) is the reference: ``scripts/region_probe.py`` prints both. Only the probe sees labels;
the evaluation half is never used to fit it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alseg.acquisition.reduce import region_feature_mean


def embed_regions(model: Any, dataset: Any, regions: Any, batch: int = 16) -> torch.Tensor:
    """(R, D) L2-normalised mean of ``model``'s deepest encoder features over each region
    of ``dataset`` (eval mode, the images as the pool scoring reads them)."""
    out: list[torch.Tensor] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(dataset), batch):
            items = [dataset[i] for i in range(start, min(start + batch, len(dataset)))]
            deep = model.forward_all(torch.stack([it["image"] for it in items]))["backbone"]
            for it, f in zip(items, deep):
                i = it["index"]
                maps = regions.map_tensor(i)[None]
                out.append(region_feature_mean(f[None], maps, int(regions.num_regions[i])))
    return F.normalize(torch.cat(out), dim=1)


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, steps: int = 300, weight_decay: float = 1e-4
) -> torch.nn.Linear:
    """Multinomial logistic regression on (N, D) rows and (N,) classes: full-batch L-BFGS
    from zero weights (deterministic), L2 penalty ``weight_decay`` on the weights."""
    probe = torch.nn.Linear(x.shape[1], num_classes)
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), lr=1.0, max_iter=steps, history_size=20)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(x), y) + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def probe_scores(pred: np.ndarray, counts: np.ndarray) -> dict[str, float]:
    """Scores of region predictions (R,) against the regions' class pixel counts (R, C):
    pixel accuracy, region (dominant-class) accuracy and mean class accuracy, in %."""
    valid = counts.sum(1)
    keep = valid > 0
    pred, counts, valid = pred[keep], counts[keep], valid[keep]
    dominant = counts.argmax(1)
    hit = pred == dominant
    per_class = [hit[dominant == c].mean() for c in np.unique(dominant)]
    return {
        "pixel_acc": 100.0 * float(counts[np.arange(len(pred)), pred].sum() / valid.sum()),
        "region_acc": 100.0 * float(hit.mean()),
        "class_acc": 100.0 * float(np.mean(per_class)),
    }


def image_halves(num_images: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed split of image indices into a fitting half and a scoring half."""
    order = np.random.default_rng(seed).permutation(num_images)
    half = num_images // 2
    return np.sort(order[:half]), np.sort(order[half:])


def linear_probe(
    x: torch.Tensor, counts: np.ndarray, offsets: np.ndarray, seed: int = 0
) -> dict[str, float]:
    """Fit on the regions of one half of the images, score on the other (see the module
    docstring). ``x``: (R, D) region embeddings; ``counts``: (R, C) class pixel counts;
    ``offsets``: (N + 1,) global region id of each image's first region."""
    fit_imgs, test_imgs = image_halves(len(offsets) - 1, seed)

    def rows(images: np.ndarray) -> np.ndarray:
        ids = [np.arange(offsets[i], offsets[i + 1]) for i in images]
        r = np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)
        return r[counts[r].sum(1) > 0]  # void-only regions have no class

    fit, test = rows(fit_imgs), rows(test_imgs)
    y = torch.as_tensor(counts[fit].argmax(1))
    probe = fit_probe(x[fit].float(), y, counts.shape[1])
    with torch.no_grad():
        pred = probe(x[test].float()).argmax(1).numpy()
    sizes = {"fit_regions": len(fit), "scored_regions": len(test)}
    return {**probe_scores(pred, counts[test]), **sizes}
