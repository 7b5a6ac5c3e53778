"""Image classification networks that the segmentation pipeline can drive.

Image classification is segmentation with one region per image: ``ClassificationNet``
returns the image's logits at every pixel of the input, so the segmentation module,
losses, acquisition reductions and metrics apply unchanged (pixel accuracy = image
accuracy). It exposes the smp attributes ``encoder`` / ``decoder`` /
``segmentation_head`` so that decoder features (the embedding) reach feature-based
strategies (coreset, badge, LAMDA, CLUE).

LAMDA's model: backbone -> bottleneck (D_backbone -> 512 -> BN -> ReLU) -> L2-normalised
embedding -> cosine classifier (normalised proxies, logits = cos / 0.1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from alseg.models.heads import CosineClassifier


class _Trunk(nn.Module):
    """torchvision backbone up to global pooling: (B, 3, H, W) -> ((B, F), (H, W))."""

    def __init__(self, name: str, weights: str | None) -> None:
        super().__init__()
        import torchvision

        if not hasattr(torchvision.models, name):
            raise ValueError(f"model.encoder={name!r} is not a torchvision model (e.g. resnet18)")
        net = getattr(torchvision.models, name)(weights="DEFAULT" if weights else None)
        self.out_features = int(net.fc.in_features)
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        return self.net(x), (int(x.shape[-2]), int(x.shape[-1]))


class _Bottleneck(nn.Module):
    """(pooled, (H, W)) -> (B, D, H, W) embedding, broadcast over the image (a view)."""

    def __init__(self, in_features: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_features, dim), nn.BatchNorm1d(dim), nn.ReLU())

    def forward(self, feats: tuple[torch.Tensor, tuple[int, int]]) -> torch.Tensor:
        pooled, (H, W) = feats
        emb = F.normalize(self.fc(pooled), dim=1)
        return emb[:, :, None, None].expand(-1, -1, H, W)


class _ImageHead(nn.Module):
    """Classify the embedding once per image, then broadcast the logits over the pixels."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        H, W = emb.shape[-2:]
        return self.head(emb[:, :, :1, :1]).expand(-1, -1, H, W)


class ClassificationNet(nn.Module):
    """Args:
    num_classes: C.
    backbone: torchvision model name (resnet18, resnet50, ...).
    weights: "imagenet" (downloads once) or None.
    dim: embedding size (512 in LAMDA).
    cosine: cosine classifier (temperature 0.1) instead of a linear one.
    """

    size_multiple = 1  # global pooling: any input size, no padding

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet18",
        weights: str | None = None,
        dim: int = 512,
        cosine: bool = True,
        temperature: float = 0.1,
    ) -> None:
        super().__init__()
        self.encoder = _Trunk(backbone, weights)
        self.decoder = _Bottleneck(self.encoder.out_features, dim)
        head: nn.Module = (
            CosineClassifier(dim, num_classes, temperature)
            if cosine
            else nn.Conv2d(dim, num_classes, 1)
        )
        self.segmentation_head = _ImageHead(head)

    def forward(self, x: torch.Tensor) -> Any:
        return self.segmentation_head(self.decoder(self.encoder(x)))
