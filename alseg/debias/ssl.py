"""Self-supervised pre-training of the feature backbone (SimCLR, with ``lightly``).

LWBC trains its committee and main classifier on frozen features of a self-supervised
backbone (the official runs use BYOL ResNet-18 checkpoints, which it does not ship). So
that the default run needs no download, alseg pre-trains a ResNet-18 with SimCLR on the
training images (no labels) with lightly's augmentations, projection head and NT-Xent
loss. BYOL is the official choice; SimCLR is lightly's simplest recipe and what we can
afford on CPUs (a named difference, docs/methods.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from alseg.debias.data import GroupDataset
from alseg.selfsup import SimCLR


@dataclass(frozen=True)
class SSLSpec:
    """Attributes:
    epochs: passes over the training images.
    batch_size: images per batch (2 views each).
    lr: SGD learning rate (momentum 0.9, weight decay 5e-4, cosine decay to 0).
    temperature: NT-Xent temperature.
    seed: the pre-training seed (one backbone per data set, shared by the runs' seeds,
        as the official code uses one BYOL checkpoint per data set).
    """

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.06
    temperature: float = 0.5
    seed: int = 0


class TwoViews(Dataset):
    """Two augmented views of each training image (lightly's SimCLR transform)."""

    def __init__(self, ds: GroupDataset, image_size: int) -> None:
        from lightly.transforms import SimCLRTransform

        self.ds = ds
        # gaussian_blur=0: lightly's setting for 32-pixel images (CIFAR-10 recipe)
        self.transform = SimCLRTransform(input_size=image_size, gaussian_blur=0.0)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        views = self.transform(Image.fromarray(self.ds.image_uint8(index)))
        return torch.as_tensor(views[0]), torch.as_tensor(views[1])


def pretrain(
    backbone: nn.Module,
    feature_dim: int,
    train: GroupDataset,
    image_size: int,
    spec: SSLSpec,
    trainer: pl.Trainer,
    num_workers: int = 0,
) -> nn.Module:
    """``backbone`` trained with SimCLR on the training images (labels unused)."""
    pl.seed_everything(spec.seed, workers=True, verbose=False)
    views = TwoViews(train, image_size)
    batch = min(spec.batch_size, len(views))
    loader = DataLoader(
        views, batch_size=batch, shuffle=True, drop_last=True, num_workers=num_workers
    )
    module = SimCLR(backbone, feature_dim, spec.epochs, spec.lr, spec.temperature)
    trainer.fit(module, loader)
    return backbone
