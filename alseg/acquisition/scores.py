"""Pixel-level acquisition scores: pure functions on logits.

Every function takes ``logits`` with the class axis at ``dim=1`` — (N, C, H, W) for
segmentation, (N, C) for classification — and returns the score with that axis removed.
Larger = more informative, always.
"""

from __future__ import annotations

import math

import torch


def _top2(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    probs = torch.softmax(logits.float() / temperature, dim=1)
    top = probs.topk(2, dim=1).values
    return top.select(1, 0), top.select(1, 1)


def entropy(
    logits: torch.Tensor, temperature: float = 1.0, normalize: bool = False
) -> torch.Tensor:
    """Shannon entropy of softmax(logits / T), natural log; / log C if ``normalize``."""
    log_p = torch.log_softmax(logits.float() / temperature, dim=1)
    ent = -(log_p.exp() * log_p).sum(dim=1)
    return ent / math.log(logits.shape[1]) if normalize else ent


def margin(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """1 - (p1 - p2): one minus the gap between the two largest probabilities."""
    p1, p2 = _top2(logits, temperature)
    return 1.0 - (p1 - p2)


def bvsb(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Best-versus-second-best ratio p2 / p1, in [0, 1]."""
    p1, p2 = _top2(logits, temperature)
    return p2 / p1


def least_confidence(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """1 - p1."""
    probs = torch.softmax(logits.float() / temperature, dim=1)
    return 1.0 - probs.amax(dim=1)


def bald(logits: torch.Tensor) -> torch.Tensor:
    """BALD mutual information from MC samples on the last axis.

    Args:
        logits: (N, C, ..., T) logits of T stochastic forward passes.
    Returns:
        (N, ...) H[mean_t p_t] - mean_t H[p_t].
    """
    log_p = torch.log_softmax(logits.float(), dim=1)
    p = log_p.exp()
    mean_p = p.mean(dim=-1)
    h_mean = -(mean_p * torch.log(mean_p.clamp_min(1e-12))).sum(dim=1)
    mean_h = -(p * log_p).sum(dim=1).mean(dim=-1)
    return h_mean - mean_h


PIXEL_SCORES = {
    "entropy": entropy,
    "margin": margin,
    "bvsb": bvsb,
    "least_confidence": least_confidence,
}
