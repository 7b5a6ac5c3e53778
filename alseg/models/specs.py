"""What a segmentation module is built with and asked for: how it trains (``OptimSpec``,
``TagSpec``), where a fit sits in a longer run (``TrainSpan``) and what a prediction pass
returns (``PredictOutputs``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("poly", "inv")


@dataclass(frozen=True)
class OptimSpec:
    """How a module trains.

    Attributes:
        optimizer: "adamw" | "sgd" (momentum 0.9, as DeepLab training).
        lr: learning rate of the backbone; the classifier gets ``lr * head_lr_mult``.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        head_lr_mult: lr factor of everything after the encoder (``head_parameters``:
            decoder, classifier, a domain discriminator) (MulActSeg, LAMDA: 10).
        lr_schedule: "poly" ((1 - t / T) ** poly_power) | "inv" ((1 + 1e-4 t) ** -0.75).
        poly_power: exponent of the poly schedule.
        nesterov: Nesterov momentum (sgd).
    """

    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    head_lr_mult: float = 1.0
    lr_schedule: str = "poly"
    poly_power: float = 0.9
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"optimizer={self.optimizer!r} is not valid; choose one of {OPTIMIZERS}"
            )
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: choose one of {LR_SCHEDULES}")


@dataclass(frozen=True)
class TagSpec:
    """Training on image tags: class maps pooled by ``pooling`` ("gap" | "gmp" | "lse",
    with ``lse_r``) into image scores, multi-label soft-margin loss (``alseg.weak.cam``)."""

    pooling: str = "gap"
    lse_r: float = 5.0
    background: bool = False  # class 0 is a background without a CAM: not in the loss (IRN)
    arch: str | None = None  # the tag network's architecture; None: the model's


@dataclass(frozen=True)
class TrainSpan:
    """Where one ``fit`` sits in a longer training run (``active.schedule=continuous``):
    the lr follows one schedule over ``total_steps`` from ``step_offset``, and the optimizer
    continues from ``optimizer_state``. The default is a fit of its own."""

    step_offset: int = 0
    total_steps: int = 0  # 0: this fit alone (the trainer's estimated stepping batches)
    optimizer_state: dict[str, Any] | None = None


@dataclass(frozen=True)
class PredictOutputs:
    """What ``predict_step`` returns for a prediction pass (declared by whoever runs it).

    Attributes:
        features: decoder features (B, D, h, w) as well as logits.
        mc_samples: > 1: logits of that many MC-dropout passes (B, C, H, W, T).
        domain: the domain discriminator's P(source) per pixel (B, H, W); needs a module
            with a discriminator (``provides_domain``).
        channels_last: run the network on NHWC tensors (faster convolutions on GPUs).
        backbone: the encoder's deepest features (B, F, h, w) as well (LAMDA's kernel; an
            image classifier's pooled backbone vector is (B, F, 1, 1)).
    """

    features: bool = False
    mc_samples: int = 1
    domain: bool = False
    channels_last: bool = False
    backbone: bool = False

    @property
    def plain(self) -> bool:
        """Only logits are asked for."""
        return not (self.features or self.backbone or self.domain) and self.mc_samples <= 1
