"""SegmentationModule: an smp network trained on partial region labels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from alseg.models.losses import PixelCrossEntropy, TrainingLoss
from alseg.models.specs import (
    OptimSpec,
    PredictOutputs,
    TrainSpan,
)

# smp architectures selectable by name (the explicit dict keeps errors readable).
ARCHITECTURES: dict[str, type[torch.nn.Module]] = {
    "DeepLabV3Plus": smp.DeepLabV3Plus,
    "DeepLabV3": smp.DeepLabV3,
    "Unet": smp.Unet,
    "UnetPlusPlus": smp.UnetPlusPlus,
    "FPN": smp.FPN,
    "PSPNet": smp.PSPNet,
    "Linknet": smp.Linknet,
    "MAnet": smp.MAnet,
    "PAN": smp.PAN,
    "Segformer": smp.Segformer,
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_network(
    arch: str, encoder: str, encoder_weights: str | None, num_classes: int, cosine: bool = False
) -> torch.nn.Module:
    """An smp model by architecture and encoder name, or ``arch="Classifier"``: an image
    classifier on a torchvision backbone (``encoder``, e.g. resnet18; cosine head if
    ``cosine``). ``encoder_weights=None`` (default in alseg) never downloads; "imagenet"
    needs internet access; a path: the encoder of ``alseg pretrain`` (its run dir or
    encoder.pt)."""
    if arch not in (*ARCHITECTURES, "Classifier"):
        valid = [*ARCHITECTURES, "Classifier"]
        raise ValueError(f"model.arch={arch!r} is not valid; choose one of {valid}")
    encoders = smp.encoders.get_encoder_names()
    if arch != "Classifier" and encoder not in encoders:
        raise ValueError(
            f"model.encoder={encoder!r} is not an smp encoder "
            "(e.g. resnet18, resnet50, efficientnet-b0)"
        )
    from alseg.pretrain import PretrainError, is_weights_path, load_pretrained

    pretrained = is_weights_path(encoder_weights)
    if arch == "Classifier":  # image classification: one region per image
        from alseg.models.classification import ClassificationNet

        if pretrained:
            raise PretrainError(
                "weights of `alseg pretrain` load into smp encoders, not Classifier"
            )
        return ClassificationNet(num_classes, encoder, encoder_weights, cosine=cosine)
    network = ARCHITECTURES[arch](
        encoder_name=encoder,
        encoder_weights=None if pretrained else encoder_weights,
        classes=num_classes,
    )
    if pretrained:  # alseg pretrain's encoder (decoder and head stay fresh)
        assert encoder_weights is not None
        load_pretrained(network.get_submodule("encoder"), encoder_weights, encoder)
    return network


class SegmentationModule(pl.LightningModule):
    """Cross-entropy on labeled pixels only, AdamW + poly schedule, mIoU over whole splits.

    Args:
        network: maps (B, 3, H, W) normalised images to (B, C, H, W) logits, or
            (B, C + 1, H, W) with a void output (``void_output``).
        num_classes: C, the classes evaluated.
        class_names: names for per-class IoU keys.
        optim: optimizer and lr schedule.
        ignore_index: unlabeled / void target value.
        void_output: the network has a (C+1)-th output for void (multi-class labels with a
            void bit); evaluation and predictions use the first C.
        span: this fit's place in a continuous training run (default: a fit of its own).
        loss: the training loss, chosen by the labeling type (``alseg.models.factory``;
            default: cross-entropy on the pixel targets).
    """

    # smp encoders need sides divisible by their output stride (at most 32): inputs of other
    # sizes (VOC, resized folders) are padded at the bottom/right and outputs cropped back.
    size_multiple = 32

    def __init__(
        self,
        network: torch.nn.Module,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        optim: OptimSpec | None = None,
        ignore_index: int = 255,
        void_output: bool = False,
        span: TrainSpan | None = None,
        loss: TrainingLoss | None = None,
    ) -> None:
        super().__init__()
        self.loss = loss or PixelCrossEntropy(ignore_index)
        self.optim = optim or OptimSpec()
        self.span = span or TrainSpan()
        self.network = network
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(c) for c in range(num_classes)]
        )
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.ignore_index = ignore_index
        self.void_output = void_output
        self.num_outputs = num_classes + int(void_output)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # zero_division=nan: a class absent from both target and prediction is left out of
        # the mean instead of counting as IoU 0.
        self.val_iou = MulticlassJaccardIndex(
            num_classes, average="none", ignore_index=ignore_index, zero_division=float("nan")
        )
        self.test_iou = self.val_iou.clone()
        # pixel accuracy over labeled pixels (= image accuracy for ClassificationNet)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index)
        self.test_acc = self.val_acc.clone()
        self.last_metrics: dict[str, float] = {}
        self.predict_outputs = PredictOutputs()
        # training_step also returns the (detached) logits, for callbacks that record
        # training dynamics (alseg.prune.callbacks.TrainingDynamics)
        self.record_train_logits = False

    @property
    def head_temperature(self) -> float:
        """The temperature the classifier divides its raw scores by (a cosine head's; 1 for
        a linear head): raw scores = logits x head_temperature."""
        from alseg.models.heads import CosineClassifier

        heads = [m for m in self.network.modules() if isinstance(m, CosineClassifier)]
        return float(heads[0].temperature) if heads else 1.0

    @property
    def provides_domain(self) -> bool:
        """Whether ``predict_step`` can return the domain discriminator's output."""
        return False

    def configure_prediction(self, outputs: PredictOutputs) -> None:
        """Declare what the next prediction passes return (see ``PredictOutputs``)."""
        if outputs.domain and not self.provides_domain:
            raise ValueError(
                "this prediction needs a domain discriminator: set adaptation.enabled=true "
                "adaptation.alignment=dann"
            )
        if outputs.channels_last != self.predict_outputs.channels_last:
            fmt = torch.channels_last if outputs.channels_last else torch.contiguous_format
            self.to(memory_format=fmt)
        self.predict_outputs = outputs

    def _input(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised image, zero-padded (= the mean colour) to a multiple of 32."""
        x = (image - self.mean) / self.std
        H, W = x.shape[-2:]
        m = getattr(self.network, "size_multiple", self.size_multiple)
        ph, pw = -H % m, -W % m
        return F.pad(x, (0, pw, 0, ph)) if ph or pw else x

    @staticmethod
    def _crop(out: torch.Tensor, image: torch.Tensor, padded: torch.Tensor) -> torch.Tensor:
        """Crop an output of the padded input back to the image's extent (any stride)."""
        H, W = image.shape[-2:]
        Hp, Wp = padded.shape[-2:]
        if (Hp, Wp) == (H, W):
            return out
        h, w = out.shape[-2:]
        return out[..., : -(-H * h // Hp), : -(-W * w // Wp)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) image in [0, 1] -> (B, C, H, W) logits."""
        x = self._input(image)
        return self._crop(self.network(x), image, x)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Any:
        logits = self(batch["image"])
        loss = self._training_loss(logits, batch)
        if self.record_train_logits:
            return {"loss": loss, "logits": logits.detach()}
        return loss

    def _training_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        parts = self.loss(logits, batch)
        n = batch["target"].shape[0]
        for k, v in parts.items():
            if k != "loss":
                self.log(f"train/{k}", v, batch_size=n)
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=n)
        return parts["loss"]

    def _eval_step(self, metrics: tuple[Metric, Metric], batch: dict[str, Any]) -> None:
        logits = self(batch["image"])[:, : self.num_classes]  # a void output is not evaluated
        pred = logits.argmax(dim=1)
        for metric in metrics:
            metric.update(pred, batch["mask"])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step((self.val_iou, self.val_acc), batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step((self.test_iou, self.test_acc), batch)

    def _eval_end(self, metrics: tuple[Metric, Metric], prefix: str) -> None:
        metric, acc = metrics
        iou = metric.compute()  # (C,), NaN for classes absent from target and prediction
        metric.reset()
        values = {f"{prefix}/mIoU": float(torch.nanmean(iou)) * 100}
        values[f"{prefix}/acc"] = float(acc.compute()) * 100
        acc.reset()
        for name, v in zip(self.class_names, iou.tolist()):
            values[f"{prefix}/IoU_{name}"] = v * 100
        self.last_metrics.update(values)
        self.log(f"{prefix}/mIoU", values[f"{prefix}/mIoU"], sync_dist=False)

    def on_validation_epoch_end(self) -> None:
        self._eval_end((self.val_iou, self.val_acc), "val")

    def on_test_epoch_end(self) -> None:
        self._eval_end((self.test_iou, self.test_acc), "test")

    def forward_features(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> (decoder features (B, D, h, w), logits (B, C, H, W)) of an smp model."""
        out = self.forward_all(image)
        return out["features"], out["logits"]

    def forward_all(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``backbone`` (the encoder's deepest features, (B, F, h', w')), ``features`` (the
        decoder's, (B, D, h, w)) and ``logits`` (B, C, H, W) of one forward pass."""
        net: Any = self.network
        if not all(hasattr(net, a) for a in ("encoder", "decoder", "segmentation_head")):
            raise TypeError(f"{type(net).__name__} is not an smp model: no encoder/decoder/head")
        x = self._input(image)
        enc = net.encoder(x)
        dec = net.decoder(enc)
        tensors = [t for t in enc if isinstance(t, torch.Tensor)]  # smp: a list, deepest last
        deepest = tensors[-1]
        if deepest.dim() == 2:  # an image classifier's pooled vector
            deepest = deepest[:, :, None, None]
        return {
            "backbone": deepest,
            "features": self._crop(dec, image, x),
            "logits": self._crop(net.segmentation_head(dec), image, x),
        }

    def _mc_logits(self, image: torch.Tensor, samples: int) -> torch.Tensor:
        """(B, C, H, W, T) logits of T passes with dropout layers on (batch norm stays in
        eval mode). The encoder holds no dropout in smp models, so it runs once."""
        net: Any = self.network
        dropouts = [m for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        if not dropouts:
            raise ValueError("MC dropout needs dropout layers; this network has none")
        x = self._input(image)
        feats = net.encoder(x)
        enc_has_dropout = any(
            isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in net.encoder.modules()
        )
        for m in dropouts:
            m.train()
        try:
            out = []
            for _ in range(samples):
                if enc_has_dropout:
                    feats = net.encoder(x)
                out.append(self._crop(net.segmentation_head(net.decoder(feats)), image, x))
        finally:
            for m in dropouts:
                m.eval()
        return torch.stack(out, dim=-1)

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        """Outputs of a batch as declared by ``configure_prediction``: (B, C, H, W) logits,
        or a dict with ``logits`` (MC-dropout: (B, C, H, W, T)) and ``features``."""
        spec = self.predict_outputs
        image = batch["image"]
        if spec.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        if spec.plain:
            return self(image)
        out: dict[str, torch.Tensor] = {}
        if spec.features or spec.backbone:
            everything = self.forward_all(image)
            out["logits"] = everything["logits"]
            if spec.features:
                out["features"] = everything["features"]
            if spec.backbone:
                out["backbone"] = everything["backbone"]
        if spec.mc_samples > 1:
            out["logits"] = self._mc_logits(image, spec.mc_samples)
        return out

    def head_parameters(self) -> list[torch.nn.Parameter]:
        """Parameters trained at ``lr * head_lr_mult``: everything after the encoder — the
        decoder and the classifier (MulActSeg's DeepLabV3+ head: ASPP, decoder, classifier;
        LAMDA's bottleneck and classifier). The encoder (backbone) trains at ``lr``."""
        net = self.network
        encoder = getattr(net, "encoder", None)
        if encoder is None:  # not an encoder-decoder: the final layer only, if named so
            head = getattr(net, "segmentation_head", None)
            return list(head.parameters()) if head is not None else []
        backbone = {id(p) for p in encoder.parameters()}
        return [p for p in self.parameters() if id(p) not in backbone]

    def configure_optimizers(self) -> Any:
        o = self.optim
        head_ids = {id(p) for p in self.head_parameters()}
        groups: list[dict[str, Any]] = [
            {"params": [p for p in self.parameters() if id(p) not in head_ids], "lr": o.lr},
            {
                "params": [p for p in self.parameters() if id(p) in head_ids],
                "lr": o.lr * o.head_lr_mult,
            },
        ]
        groups = [g for g in groups if g["params"]]
        if o.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=o.lr, momentum=0.9, weight_decay=o.weight_decay, nesterov=o.nesterov
            )
        else:
            opt = torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        total = self.span.total_steps or max(1, int(self.trainer.estimated_stepping_batches))
        power, offset = o.poly_power, self.span.step_offset
        if o.lr_schedule == "inv":  # (1 + 1e-4 t) ** -0.75 (DANN / LAMDA)

            def factor(step: int) -> float:
                return float((1.0 + 1e-4 * (step + offset)) ** -0.75)
        else:

            def factor(step: int) -> float:
                return float(max(0.0, 1.0 - (step + offset) / total) ** power)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        # continuous schedule: the optimizer continues from the previous round's state
        if self.span.optimizer_state is not None:
            self.trainer.optimizers[0].load_state_dict(self.span.optimizer_state)
