"""Per-sample difficulty scores (pure functions; formulas in docs/methods.md).

A *sample* is an image: a classifier's image, or a segmentation image whose pixel values
are averaged over its labeled pixels (``per_image_mean``). Higher is harder for every
score but ``aum`` (``HARDER_IS_HIGHER``).

- EL2N (Paul et al., 2021; ``mansheej/data_diet``): ``||softmax(f(x)) - onehot(y)||_2``
  with the model at a given epoch, averaged over scoring seeds.
- GraNd (same paper): ``||grad_theta CE(f(x), y)||_2`` over all parameters, per sample with
  ``torch.func`` (vmap of grad); ``grand_last`` over the last layer's parameters only.
- Forgetting (Toneva et al., 2019): the number of correct -> incorrect transitions between
  consecutive presentations; never-learned samples count as forgotten infinitely often
  (data_diet's ``np.inf``). For segmentation the accuracy of a presentation is the image's
  pixel accuracy and a transition counts its drop, ``sum_e max(0, acc_{e-1} - acc_e)``
  (the count itself for 0/1 accuracies); never learned: pixel accuracy never >= 0.5.
- Dynamic uncertainty (He et al., 2023; official ``BAAI-DCAI/Dataset-Pruning``,
  ``ImageNet/get_coreset.py`` and ``main_and_produce.py``): the true-class probability of
  each sample from an eval-mode pass on its un-augmented view, at every step before the
  update; the unbiased standard deviation over each window of J epochs, the windows ending
  at epochs J-1 .. E-2 (the last epoch's is left out), averaged.
- AUM (Pleiss et al., 2020; their ``aum`` package's AUMCalculator): the mean over
  presentations of the logit margin z_y - max_{c != y} z_c (low = hard).
- ``aum_prob``, AUM as CCS computes it (Zheng et al., 2023; ``generate_importance_score.py``:
  ``accumulated_margin``): the probability margin p_y - max_{c != y} p_c, summed over
  presentations there and averaged here (the same ranking when every sample is presented
  once an epoch). CCS's rows use it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

SCORES = ("el2n", "grand", "grand_last", "forgetting", "dyn_unc", "aum", "aum_prob")
HARDER_IS_HIGHER = {s: s not in ("aum", "aum_prob") for s in SCORES}


def per_image_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B,) mean of (B, ...) ``values`` over each image's ``valid`` entries (NaN if none)."""
    v = values.flatten(1) * valid.flatten(1)
    n = valid.flatten(1).sum(1).float()
    return v.sum(1) / n.where(n > 0, torch.full_like(n, float("nan")))


def pixel_statistics(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> dict[str, torch.Tensor]:
    """Per-image statistics of a batch: ``p_true`` (true-class probability), ``acc``
    (share of pixels predicted right), ``margin`` (p_y - largest other p), ``logit_margin``
    (z_y - largest other z) and ``el2n``, each the mean over labeled pixels. logits
    (B, C, H, W) or (B, C); target (B, H, W) or (B,)."""
    if logits.dim() == 2:
        logits, target = logits[..., None, None], target[..., None, None]
    C = logits.shape[1]
    valid = target != ignore_index
    t = target.where(valid, torch.zeros_like(target))
    p = F.softmax(logits.float(), dim=1)
    p_true = p.gather(1, t[:, None]).squeeze(1)
    onehot = F.one_hot(t, C).permute(0, 3, 1, 2).float()
    others = p.masked_fill(onehot.bool(), float("-inf")).amax(1)
    z = logits.float()
    z_true = z.gather(1, t[:, None]).squeeze(1)
    z_others = z.masked_fill(onehot.bool(), float("-inf")).amax(1)
    el2n = (p - onehot).pow(2).sum(1).sqrt()
    correct = (logits.argmax(1) == t).float()
    out = {
        "p_true": p_true,
        "acc": correct,
        "margin": p_true - others,
        "logit_margin": z_true - z_others,
        "el2n": el2n,
    }
    return {k: per_image_mean(v, valid) for k, v in out.items()}


def forgetting(acc: np.ndarray, learned: float = 0.5) -> np.ndarray:
    """(N,) forgetting events from (E, N) accuracies per epoch (NaN: not presented);
    ``inf`` for a sample whose accuracy never reached ``learned``."""
    a = np.asarray(acc, dtype=np.float64)
    drops = np.zeros(a.shape[1])
    prev = np.zeros(a.shape[1])  # as data_diet: the first presentation forgets nothing
    for row in a:
        seen = ~np.isnan(row)
        drops[seen] += np.maximum(prev[seen] - row[seen], 0.0)
        prev[seen] = row[seen]
    never = ~(np.nan_to_num(a, nan=0.0) >= learned).any(axis=0)
    drops[never] = np.inf
    return drops


def dynamic_uncertainty(p_true: np.ndarray, window: int) -> np.ndarray:
    """(N,) mean over windows of the unbiased std of the true-class probability over
    ``window`` consecutive epochs, the windows ending at epochs window-1 .. E-2 (as the
    official code: the last epoch's window is left out); p_true (E, N), NaN where a sample
    was not presented in an epoch (left out of its window's std)."""
    p = np.asarray(p_true, dtype=np.float64)
    E = p.shape[0]
    if window + 1 > E:
        raise ValueError(
            f"dynamic uncertainty needs at least prune.window + 1 = {window + 1} epochs of "
            f"training (the last epoch's window is left out); the scoring run has {E}"
        )
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN
        stds = np.stack([np.nanstd(p[k : k + window], axis=0, ddof=1) for k in range(E - window)])
        return np.nanmean(stds, axis=0)


def last_layer(module: nn.Module) -> list[str]:
    """Names of the parameters of the last Linear or Conv layer (registration order)."""
    names: list[str] = []
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and any(True for _ in m.parameters(False)):
            names = [f"{name}.{p}" if name else p for p, _ in m.named_parameters(recurse=False)]
    if not names:
        raise ValueError(f"{type(module).__name__} has no Linear or Conv2d layer")
    return names


def grand(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    names: list[str] | None = None,
    chunk_size: int | None = 4,
) -> torch.Tensor:
    """(B,) per-sample gradient norms of ``loss(net(x)[None], y[None])`` with respect to the
    parameters ``names`` (None: all), by ``vmap(grad(...))`` over the batch. ``net`` should
    be in eval mode (batch-norm statistics fixed, as data_diet scores)."""
    params = {k: v.detach() for k, v in net.named_parameters()}
    chosen = {k: params[k] for k in (names if names is not None else list(params))}
    frozen = {k: v for k, v in params.items() if k not in chosen}
    buffers = dict(net.named_buffers())

    def sample_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = functional_call(net, ({**frozen, **p}, buffers), (x[None],))
        return loss(out, y[None])

    grads = vmap(grad(sample_loss), in_dims=(None, 0, 0), chunk_size=chunk_size)(
        chosen, images, targets
    )
    sq = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
    assert isinstance(sq, torch.Tensor)
    return sq.sqrt()
