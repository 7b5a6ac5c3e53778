"""Self-supervised pre-training modules (``lightly``'s losses, heads and transforms).

* ``SimCLR`` (Chen et al., 2020): one pooled embedding per image, NT-Xent between two
  augmented views. The image-level method of ``alseg pretrain`` and the backbone of
  debiasing (``alseg.debias.ssl``). Chosen over BYOL and DINO because it has no momentum
  encoder (half the compute and memory on a CPU) and alseg already trains it for debiasing:
  one implementation, one tested path. Its weakness, many negatives per batch, is why
  DenseCL keeps a memory bank.
* ``DenseCL`` (Wang et al., CVPR 2021): made for dense prediction. A MoCo v2 global loss
  plus a dense one: each location of the query view's feature map is matched with the
  most similar location of the key view (cosine of the backbone features) and their
  projections are contrasted against a memory bank of dense keys; loss = (1 - lambda)
  global + lambda dense, lambda = 0.5; keys from a momentum encoder (EMA). lightly's
  example projects its keys with the query heads; here they come from the momentum copies,
  as in the paper.

Both take an ``Encoder``: the segmentation network's encoder, returning its deepest feature
map, so the weights they learn load into the segmentation model as they are.

Determinism for resuming: ``EpochSampler`` draws each epoch's order from (seed, epoch) and
hands the data set ``epoch * N + index``; ``TwoViews`` draws a sample's augmentation from
(seed, epoch, index). A run resumed from an epoch's checkpoint sees the same batches as an
uninterrupted one.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import Dataset, DistributedSampler

from alseg.distributed import world_size


class Encoder(nn.Module):
    """The deepest feature map of an smp encoder (or any module returning a list of maps):
    (B, 3, H, W) -> (B, D, h, w)."""

    def __init__(self, encoder: nn.Module, channels: int) -> None:
        super().__init__()
        self.encoder, self.channels = encoder, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.encoder(x)
        return out[-1] if isinstance(out, (list, tuple)) else out


class SimCLR(pl.LightningModule):
    """A backbone with lightly's SimCLR projection head, trained with NT-Xent.

    Args:
        backbone: images -> features (B, D, ...) that are averaged to (B, D).
        feature_dim: D.
        epochs: length of the cosine lr schedule (per epoch).
        lr: SGD learning rate (momentum 0.9, weight decay 5e-4).
        temperature: NT-Xent temperature.
    """

    def __init__(
        self, backbone: nn.Module, feature_dim: int, epochs: int, lr: float, temperature: float
    ) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models.modules import SimCLRProjectionHead

        self.backbone, self.epochs, self.lr = backbone, epochs, lr
        self.projection = SimCLRProjectionHead(feature_dim, feature_dim, 128)
        self.criterion = NTXentLoss(temperature=temperature)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f = self.backbone(x)
        return f.flatten(2).mean(2) if f.dim() > 2 else f

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        a, b = batch
        z = self.projection(self.embed(torch.cat([a, b])))
        loss = self.criterion(*z.chunk(2))
        self.log("ssl_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> Any:
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=5e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.epochs, 1))
        return [opt], [sched]


class DenseCL(pl.LightningModule):
    """DenseCL on a backbone returning a feature map (see the module docstring).

    Args:
        backbone: images -> (B, D, h, w).
        feature_dim: D.
        epochs, lr: the cosine lr schedule and SGD (momentum 0.9, weight decay 1e-4).
        temperature: of both contrastive losses (the paper: 0.2).
        dense_weight: lambda, the dense loss's share (the paper: 0.5).
        momentum: EMA of the key encoder, from ``momentum`` to 1 over the run (cosine).
        memory_bank: negatives kept per loss (the paper's queue: 65536).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feature_dim: int,
        epochs: int,
        lr: float,
        temperature: float = 0.2,
        dense_weight: float = 0.5,
        momentum: float = 0.99,
        memory_bank: int = 4096,
    ) -> None:
        super().__init__()
        from lightly.loss import NTXentLoss
        from lightly.models import utils
        from lightly.models.modules import DenseCLProjectionHead

        self.backbone, self.epochs, self.lr = backbone, epochs, lr
        self.dense_weight, self.momentum = dense_weight, momentum
        self.head_global = DenseCLProjectionHead(feature_dim, feature_dim, 128)
        self.head_local = DenseCLProjectionHead(feature_dim, feature_dim, 128)
        self.backbone_key = copy.deepcopy(backbone)
        self.head_global_key = copy.deepcopy(self.head_global)
        self.head_local_key = copy.deepcopy(self.head_local)
        for m in (self.backbone_key, self.head_global_key, self.head_local_key):
            utils.deactivate_requires_grad(m)
        bank = (memory_bank, 128)
        self.criterion_global = NTXentLoss(temperature=temperature, memory_bank_size=bank)
        self.criterion_local = NTXentLoss(temperature=temperature, memory_bank_size=bank)

    @staticmethod
    def _project(
        features: torch.Tensor, head_global: nn.Module, head_local: nn.Module
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, h, w) -> features (B, hw, D), global (B, 128), local (B, hw, 128)."""
        pooled = features.flatten(2).mean(2)
        flat = features.flatten(2).permute(0, 2, 1)
        return flat, head_global(pooled), head_local(flat)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        from lightly.models import utils
        from lightly.utils.scheduler import cosine_schedule

        m = cosine_schedule(self.current_epoch, max(self.epochs, 1), self.momentum, 1.0)
        for online, key in (
            (self.backbone, self.backbone_key),
            (self.head_global, self.head_global_key),
            (self.head_local, self.head_local_key),
        ):
            utils.update_momentum(online, key, m=m)
        query, key = batch
        q_feat, q_global, q_local = self._project(
            self.backbone(query), self.head_global, self.head_local
        )
        with torch.no_grad():
            k_feat, k_global, k_local = self._project(
                self.backbone_key(key), self.head_global_key, self.head_local_key
            )
        # each query location's key: the key location of most similar backbone feature
        k_local = utils.select_most_similar(q_feat, k_feat, k_local)
        loss_global = self.criterion_global(q_global, k_global)
        loss_local = self.criterion_local(q_local.flatten(end_dim=1), k_local.flatten(end_dim=1))
        loss = (1 - self.dense_weight) * loss_global + self.dense_weight * loss_local
        self.log("ssl_loss", loss, prog_bar=True)
        return loss

    # lightly keeps its memory banks out of the state dict (non-persistent buffers): they go
    # into the checkpoint here, so a resumed run contrasts against the same negatives
    def _banks(self) -> dict[str, Any]:
        return {
            "global": self.criterion_global.memory_bank,
            "local": self.criterion_local.memory_bank,
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["memory_banks"] = {
            k: {"bank": m.bank.detach().cpu(), "ptr": m.bank_ptr.detach().cpu()}
            for k, m in self._banks().items()
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for k, m in self._banks().items():
            saved = checkpoint["memory_banks"][k]
            m.bank = saved["bank"].to(m.bank.device)
            m.bank_ptr = saved["ptr"].to(m.bank_ptr.device)

    def configure_optimizers(self) -> Any:
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(self.epochs, 1))
        return [opt], [sched]


class EpochSampler(DistributedSampler):
    """Each epoch a permutation drawn from (seed, epoch), yielded as ``epoch * n + index``
    (``TwoViews`` draws the augmentation from it). Under DDP rank r takes every world-th
    item of the permutation (padded by repetition to equal shards), decided at iteration
    time; being a DistributedSampler, Lightning keeps it and calls ``set_epoch``."""

    def __init__(self, n: int, seed: int) -> None:  # no super().__init__: it needs the group
        self.n, self.seed, self.epoch = n, seed, 0
        self.shuffle, self.drop_last = True, False

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return world_size()

    @property
    def rank(self) -> int:  # type: ignore[override]
        d = torch.distributed
        return d.get_rank() if d.is_available() and d.is_initialized() else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g)
        world = self.num_replicas
        order = torch.cat([order, order[: (-self.n) % world]])  # equal shards
        return iter((order[self.rank :: world] + self.epoch * self.n).tolist())

    def __len__(self) -> int:
        return -(-self.n // self.num_replicas)


class TwoViews(Dataset):
    """Two augmented views (a lightly transform returning a list of two) of image
    ``k % N`` of ``image_fn``, drawn from the random state (seed, k) (``EpochSampler``'s
    keys: every epoch new views, the same ones when resumed)."""

    def __init__(
        self, image_fn: Callable[[int], np.ndarray], n: int, transform: Any, seed: int
    ) -> None:
        self.image_fn, self.n, self.transform, self.seed = image_fn, n, transform, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = Image.fromarray(self.image_fn(key % self.n))
        s = (self.seed * 1_000_003 + key) % 2**32
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            state = random.getstate()
            random.seed(s)
            views = self.transform(image)
            random.setstate(state)
        return torch.as_tensor(views[0]), torch.as_tensor(views[1])
