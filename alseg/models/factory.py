"""``ModelSpec``: every model setting of an experiment in one typed object, and the
module it builds for a stage (1: the acquisition model; 2: MulActSeg's retrained one)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from alseg.models.adaptation import AlignSpec, DomainAdaptationModule
from alseg.models.heads import use_cosine_head
from alseg.models.losses import MultiClassAnswers, PixelCrossEntropy, TrainingLoss
from alseg.models.segmentation import (
    OptimSpec,
    SegmentationModule,
    TrainSpan,
    build_network,
)
from alseg.models.specs import TagSpec
from alseg.weak.cam import ImageTagLoss


@dataclass(frozen=True)
class ModelSpec:
    """Attributes:
    arch, encoder, encoder_weights: the network (``build_network``).
    num_classes: C, the evaluated classes; ``void_output`` adds a (C+1)-th output.
    class_names: one per class.
    cosine: a cosine classifier (logits = cos / ``head_temperature``) instead of a linear one.
    optim: optimizer and lr schedule of stage 1.
    stage2_lr: the learning rate of stage 2 (None: stage 1's).
    multiclass: the labels are multi-class answers (MulActSeg's losses, ``MultiClassAnswers``).
    loss_weights: (CE, merged positive, prototypical pixel) of multi-class labels.
    ignore_index: the void / unlabeled target value.
    align: train with the labeled source domain (``DomainAdaptationModule``), or None.
    tags: stage 1 trains on image tags (``labeling=image``; with its own architecture if
        ``tags.arch`` is set), or None.
    """

    arch: str
    encoder: str
    encoder_weights: str | None
    num_classes: int
    class_names: tuple[str, ...]
    optim: OptimSpec
    void_output: bool = False
    cosine: bool = False
    head_temperature: float = 0.1
    stage2_lr: float | None = None
    multiclass: bool = False
    loss_weights: tuple[float, float, float] = (16.0, 8.0, 1.0)
    ignore_index: int = 255
    align: AlignSpec | None = None
    tags: TagSpec | None = None

    def build(self, stage: int = 1, span: TrainSpan | None = None) -> SegmentationModule:
        """A freshly initialised module (draws from the global RNG: seed before)."""
        outputs = self.num_classes + int(self.void_output)
        tags = self.tags if stage == 1 else None  # stage 2 trains on pseudo labels
        arch = tags.arch if tags is not None and tags.arch else self.arch
        network = build_network(arch, self.encoder, self.encoder_weights, outputs, self.cosine)
        if self.cosine and arch != "Classifier":  # the classifier builds its own head
            use_cosine_head(network, self.head_temperature)
        optim = self.optim
        if stage == 2 and self.stage2_lr is not None:
            optim = replace(optim, lr=self.stage2_lr)
        args = (network, self.num_classes, self.class_names, optim, self.ignore_index)
        rest = (self.void_output, span, self.loss(tags))
        if self.align is not None:
            return DomainAdaptationModule(*args, *rest, align=self.align)
        return SegmentationModule(*args, *rest)

    def loss(self, tags: TagSpec | None) -> TrainingLoss:
        """The training loss of the labeling type: image tags (stage 1 of ``labeling=image``),
        multi-class answers, or the pixel cross-entropy (dominant and pixel labels)."""
        if tags is not None:
            return ImageTagLoss(tags, self.num_classes)
        if self.multiclass:
            outputs = self.num_classes + int(self.void_output)
            return MultiClassAnswers(self.loss_weights, outputs, self.ignore_index)
        return PixelCrossEntropy(self.ignore_index)
