"""Classifier heads. ``use_cosine_head`` swaps the last conv of any smp model's
segmentation head for a cosine classifier (MulActSeg, LAMDA)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class CosineClassifier(nn.Module):
    """Per-pixel cosine classifier: logits = cos(feature, class weight) / temperature.

    Args:
        in_channels: D.
        num_classes: C.
        temperature: 0.1 in MulActSeg and LAMDA.
    Shapes: (B, D, H, W) -> (B, C, H, W).
    """

    def __init__(self, in_channels: int, num_classes: int, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.weight = nn.Parameter(torch.empty(num_classes, in_channels))
        nn.init.normal_(self.weight, std=0.01)
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = F.normalize(features, dim=1)
        w = F.normalize(self.weight, dim=1)
        return torch.einsum("bdhw,cd->bchw", f, w) / self.temperature


def use_cosine_head(network: nn.Module, temperature: float = 0.1) -> nn.Module:
    """Replace the 1x1 conv of an smp model's ``segmentation_head`` by a CosineClassifier."""
    head = getattr(network, "segmentation_head", None)
    if not isinstance(head, nn.Sequential) or not isinstance(head[0], nn.Conv2d):
        raise TypeError(f"{type(network).__name__} has no smp segmentation_head to replace")
    conv = head[0]
    if conv.kernel_size != (1, 1):
        raise ValueError(f"the head conv has kernel {conv.kernel_size}; a cosine head needs 1x1")
    head[0] = CosineClassifier(conv.in_channels, conv.out_channels, temperature)
    return network
