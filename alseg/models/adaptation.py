"""DomainAdaptationModule: labeled source + labeled target (+ unlabeled target) training.

Loss = CE(source) + CE(labeled target) + alignment, with alignment
  * ``none``;
  * ``dann``: a domain discriminator on the decoder features (per pixel; for
    classification the image embedding) or on the output space (softmax maps), behind a
    gradient-reversal layer whose coefficient ramps as 2 / (1 + exp(-step / scale)) - 1
    (docs/methods.md); the discriminator tells source (1) from target (0);
  * ``entropy``: mean pixel entropy of the unlabeled target predictions.
The same module drives smp segmentation models and ``ClassificationNet`` (one region per
image). Batches come from ``ActiveDataModule`` as ``{"source", "target", "unlabeled"}``
(``target`` is absent while no target region is labeled: source-only training).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from alseg.acquisition.scores import entropy
from alseg.models.losses import masked_cross_entropy
from alseg.models.segmentation import SegmentationModule

ALIGNMENTS = ("none", "dann", "entropy")
DISCRIMINATE = ("features", "output")


@dataclass(frozen=True)
class AlignSpec:
    """How source and target are aligned.

    Attributes:
        alignment: "none" | "dann" | "entropy".
        discriminate: "features" (decoder features) | "output" (softmax maps), for dann.
        disc_hidden: hidden widths of the discriminator (LAMDA: 1024, 1024).
        align_weight: weight of the alignment loss.
        grl_scale: the step scale of the gradient-reversal coefficient (1000).
    """

    alignment: str = "none"
    discriminate: str = "features"
    disc_hidden: tuple[int, ...] = (1024, 1024)
    align_weight: float = 1.0
    grl_scale: float = 1000.0

    def __post_init__(self) -> None:
        if self.alignment not in ALIGNMENTS:
            raise ValueError(
                f"alignment={self.alignment!r} is not valid; choose one of {ALIGNMENTS}"
            )
        if self.discriminate not in DISCRIMINATE:
            raise ValueError(f"discriminate={self.discriminate!r}: choose one of {DISCRIMINATE}")


class _ReverseGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.coefficient * grad, None


def reverse_gradient(x: torch.Tensor, coefficient: float) -> torch.Tensor:
    """Identity forward; backward multiplies the upstream gradient by -coefficient."""
    return _ReverseGrad.apply(x, coefficient)


def grl_coefficient(step: int, scale: float = 1000.0) -> float:
    """2 / (1 + exp(-step / scale)) - 1: 0 at the start, -> 1."""
    return 2.0 / (1.0 + math.exp(-step / scale)) - 1.0


class DomainDiscriminator(nn.Module):
    """Per-location MLP (1x1 convs) D -> hidden... -> 1 logit (source = 1)."""

    def __init__(self, in_channels: int, hidden: Sequence[int] = (1024, 1024)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for h in hidden:
            layers += [nn.Conv2d(c, h, 1), nn.ReLU(inplace=True)]
            c = h
        layers.append(nn.Conv2d(c, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _compact(x: torch.Tensor) -> torch.Tensor:
    """A map broadcast over the image (an expanded view, e.g. a classification embedding)
    is one location: keep (B, D, 1, 1) so the discriminator runs once per image."""
    if x.stride(-1) == 0 and x.stride(-2) == 0:
        return x[..., :1, :1]
    return x


class DomainAdaptationModule(SegmentationModule):
    """A SegmentationModule that also trains on the labeled source domain.

    Args (beyond SegmentationModule's, by keyword):
        align: the alignment term (default: none).
    """

    def __init__(
        self,
        network: nn.Module,
        num_classes: int,
        *args: Any,
        align: AlignSpec | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(network, num_classes, *args, **kwargs)
        self.align = align or AlignSpec()
        self.discriminator: DomainDiscriminator | None = None
        if self.align.alignment == "dann":
            a = self.align
            channels = self.num_outputs if a.discriminate == "output" else self._feature_channels()
            self.discriminator = DomainDiscriminator(channels, a.disc_hidden)

    @property
    def provides_domain(self) -> bool:
        return self.discriminator is not None

    def grl_coefficient(self) -> float:
        """The gradient-reversal coefficient at this step of the whole training run: the
        ramp continues across the fits of a continuous schedule (``span.step_offset``), as
        the official warm-start GRL counts every iteration of one run."""
        step = (self.global_step if self._trainer is not None else 0) + self.span.step_offset
        return grl_coefficient(step, self.align.grl_scale)

    def _feature_channels(self) -> int:
        net: Any = self.network
        was = net.training
        net.eval()
        with torch.no_grad():
            dec = net.decoder(net.encoder(torch.zeros(2, 3, 64, 64)))
        net.train(was)
        return int(dec.shape[1])

    def _domain_logits(
        self, feats: torch.Tensor, logits: torch.Tensor, coef: float
    ) -> torch.Tensor:
        assert self.discriminator is not None
        x = feats if self.align.discriminate == "features" else torch.softmax(logits, 1)
        return self.discriminator(reverse_gradient(_compact(x), coef))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        if "source" not in batch:  # a plain (target-only) batch
            return super().training_step(batch, batch_idx)
        parts = [("source", batch["source"]["image"])]
        for key in ("target", "unlabeled"):
            if key in batch:
                parts.append((key, batch[key]["image"]))
        sizes = [x.shape[0] for _, x in parts]
        feats, logits = self.forward_features(torch.cat([x for _, x in parts]))
        f_by = dict(zip([k for k, _ in parts], feats.split(sizes)))
        l_by = dict(zip([k for k, _ in parts], logits.split(sizes)))
        n = sum(sizes)
        loss = masked_cross_entropy(l_by["source"], batch["source"]["mask"], self.ignore_index)
        self.log("train/source_ce", loss, batch_size=n)
        if "target" in batch:
            tgt = masked_cross_entropy(l_by["target"], batch["target"]["target"], self.ignore_index)
            self.log("train/target_ce", tgt, batch_size=n)
            loss = loss + tgt
        a = self.align
        if a.alignment == "dann":
            coef = self.grl_coefficient()
            self.log("train/grl", coef, batch_size=n)
            d_logits, d_labels = [], []
            for key in f_by:
                d = self._domain_logits(f_by[key], l_by[key], coef)
                d_logits.append(d.flatten())
                d_labels.append(torch.full_like(d.flatten(), float(key == "source")))
            dom = F.binary_cross_entropy_with_logits(torch.cat(d_logits), torch.cat(d_labels))
            self.log("train/domain_loss", dom, batch_size=n)
            loss = loss + a.align_weight * dom
        elif a.alignment == "entropy" and "unlabeled" in l_by:
            ent = entropy(l_by["unlabeled"]).mean()
            self.log("train/target_entropy", ent, batch_size=n)
            loss = loss + a.align_weight * ent
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        return loss

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        spec = self.predict_outputs
        if not spec.domain:
            return super().predict_step(batch, batch_idx, dataloader_idx)
        feats, logits = self.forward_features(batch["image"])
        d = torch.sigmoid(self._domain_logits(feats, logits, 0.0))  # (B, 1, h, w)
        H, W = logits.shape[-2:]
        out: dict[str, torch.Tensor] = {"logits": logits}
        out["domain"] = F.interpolate(d, size=(H, W), mode="nearest")[:, 0]
        if spec.features:
            out["features"] = feats
        return out
