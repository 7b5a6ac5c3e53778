"""Learning from image tags (``labeling=image``; docs/methods.md, section H): after each
round's stage-1 fit (the tag classifier), for the tagged images

1. CAMs (multi-scale + flip, restricted to the tags) -> confident areas, written to
   ``cam_labels/round_XX/`` (``CamWriter``);
2. a boundary network (a 2-class segmentation network, B = P(boundary)) trained on pixel
   pairs of the confident areas with the MIL loss (``BoundaryModule``), saved as
   ``checkpoints/round_XX_stage3.pt``;
3. the CAMs propagated by a random walk along its boundaries -> pseudo labels, written to
   ``weak_labels/round_XX/`` (``WalkWriter``);
4. a re-initialised model trained on them with CE (stage 2), which is evaluated.

Against ground truth, for the record (never used in training): ``cam_mIoU`` (argmax of
the tagged CAMs), ``confident_acc`` / ``confident_coverage`` (the confident areas) and
``pseudo_mIoU`` (the random-walk labels), over the tagged images; ``boundary_ods`` /
``boundary_ois`` (the boundary network's F-measure on the test split, class-agnostic,
matched within ``weak.boundary_tolerance`` pixels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.data.label_maps import label_map_path, save_label_map
from alseg.extensions.base import Extension, FitResult
from alseg.extensions.maps import MapWriter, pct, write_maps
from alseg.extensions.stage2 import train_on_pseudo_labels
from alseg.models.segmentation import (
    OptimSpec,
    PredictOutputs,
    SegmentationModule,
    build_network,
)
from alseg.scatter import region_class_counts
from alseg.weak.boundary_eval import f_measure, label_boundaries
from alseg.weak.cam import cam_labels, confident_labels, multiscale_cams
from alseg.weak.paths import PathIndex, boundary_mil_loss, random_walk

CAMS, WALK = "cam_labels", "weak_labels"
BOUNDARY_STAGE = 3


def confusion(pred: torch.Tensor, gt: torch.Tensor, num_classes: int, ignore: int) -> torch.Tensor:
    """(C * C,) float64 counts of (ground truth, prediction) over the labeled pixels: the
    class counts of each ground-truth "region" (``region_class_counts``)."""
    valid = (gt != ignore) & (pred != ignore)
    counts = region_class_counts(pred[valid].long(), gt[valid].long(), num_classes, num_classes)
    return counts.reshape(-1).double()


def miou(conf: torch.Tensor, num_classes: int) -> float:
    """Mean IoU (%) over the classes present in ground truth or prediction; NaN if none."""
    m = conf.view(num_classes, num_classes)
    tp = m.diag()
    union = m.sum(0) + m.sum(1) - tp
    present = union > 0
    return (
        round(100.0 * float((tp[present] / union[present]).mean()), 4)
        if present.any()
        else float("nan")
    )


class BoundaryModule(SegmentationModule):
    """A segmentation network with two outputs (interior, boundary), B = P(boundary),
    trained with the boundary MIL loss on the confident areas (the ``target`` of its
    batches). Optimizer, lr schedule, input normalisation: those of ``SegmentationModule``."""

    def __init__(
        self, network: torch.nn.Module, index: PathIndex, optim: OptimSpec, ignore_index: int
    ) -> None:
        super().__init__(network, 2, ("interior", "boundary"), optim, ignore_index)
        self.index = index

    def boundary(self, image: torch.Tensor) -> torch.Tensor:
        """(N, H, W) boundary probabilities, the mean over the image and its flip (IRN)."""
        logits = self(image) + self(image.flip(-1)).flip(-1)
        return torch.softmax(logits / 2, dim=1)[:, 1]

    def _training_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        B = torch.softmax(logits.float(), dim=1)[:, 1]
        loss = boundary_mil_loss(B, batch["target"], self.index, self.ignore_index)
        self.log("train/boundary_loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss


class _TagWriter(MapWriter):
    """A pass over tagged images with the tag model: their multi-scale CAMs."""

    def __init__(self, folder: Path, loop: Any, settings: Any, num_counts: int) -> None:
        super().__init__(PredictOutputs(), folder, num_counts)
        self.loop, self.s = loop, settings
        self.C = loop.store.num_classes
        self.ignore = loop.dm.labeled.ignore_index
        self.mask_fn = loop.dm.labeled.mask_fn
        self.module: Any = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        self.module = pl_module

    def tags(self, indices: list[int]) -> torch.Tensor:
        offsets = self.loop.dm.regions.offsets
        first = np.asarray([offsets[i] for i in indices], dtype=np.int64)
        return torch.from_numpy(self.loop.store.class_sets(first))

    def cams(self, batch: dict[str, Any]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Image indices, (N, C) tags, (N, C, H, W) CAMs."""
        indices = batch["index"].tolist()
        tags = self.tags(indices).to(batch["image"].device)
        C = self.C
        cams = multiscale_cams(
            lambda x: self.module(x)[:, :C], batch["image"], tags, self.s.cam_scales
        )
        return indices, tags, cams


class CamWriter(_TagWriter):
    """Writes the confident areas; counts the CAM labels' confusion matrix, confident
    pixels right, confident pixels, labeled pixels."""

    def __init__(self, folder: Path, loop: Any, settings: Any) -> None:
        C = loop.store.num_classes
        super().__init__(folder, loop, settings, C * C + 3)

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        indices, tags, cams = self.cams(batch)
        s, C = self.s, self.C
        conf = confident_labels(cams, tags, s.fg_threshold, s.bg_threshold, False, self.ignore)
        labels = cam_labels(cams, tags)
        for b, index in enumerate(indices):
            save_label_map(label_map_path(self.folder, index), conf[b].cpu())
            gt = self.mask_fn(index)
            c = conf[b].cpu()
            known = (c != self.ignore) & (gt != self.ignore)
            self.counts[: C * C] += confusion(labels[b].cpu(), gt, C, self.ignore)
            self.counts[C * C :] += torch.tensor(
                [
                    int((c[known] == gt[known]).sum()),
                    int(known.sum()),
                    int((gt != self.ignore).sum()),
                ],
                dtype=torch.float64,
            )

    def stats(self) -> dict[str, float]:
        C = self.C
        hit, known, valid = self.counts[C * C :].tolist()
        return {
            "cam_mIoU": miou(self.counts[: C * C], C),
            "confident_acc": pct(hit, known),
            "confident_coverage": pct(known, valid),
        }


class WalkWriter(_TagWriter):
    """Writes the random-walk pseudo labels (argmax over the tagged classes of the
    propagated CAMs); counts their confusion matrix. ``extra``: stats saved with them."""

    def __init__(
        self,
        folder: Path,
        loop: Any,
        settings: Any,
        boundary: BoundaryModule,
        extra: dict[str, float] | None = None,
    ) -> None:
        C = loop.store.num_classes
        super().__init__(folder, loop, settings, C * C)
        self.boundary_module, self.index = boundary, PathIndex(settings.radius)
        self.extra = dict(extra or {})

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        # the CAMs of the first pass are recomputed rather than kept: C x H x W floats per
        # image would not fit in memory at Cityscapes scale
        indices, tags, cams = self.cams(batch)
        bnd = self.boundary_module.to(batch["image"].device).eval()
        B = bnd.boundary(batch["image"]).float()
        for b, index in enumerate(indices):
            walked = random_walk(cams[b], B[b], self.index, self.s.beta, self.s.walk_steps)
            walked = walked.masked_fill(tags[b][:, None, None] == 0, -1.0)
            pseudo = walked.argmax(0).cpu()
            save_label_map(label_map_path(self.folder, index), pseudo)
            self.counts += confusion(pseudo, self.mask_fn(index), self.C, self.ignore)

    def stats(self) -> dict[str, float]:
        return {"pseudo_mIoU": miou(self.counts, self.C), **self.extra}


class ImageLabels(Extension):
    """CAMs -> boundaries (MIL) -> random-walk pseudo labels -> a stage-2 model.

    Args:
        settings: the ``weak`` config section.
        network: ``() ->`` a fresh 2-output network for the boundary model.
        optim: its optimizer and lr schedule.
        keep_checkpoints: checkpoints kept per stage.
    """

    name = "image_labels"

    def __init__(
        self, settings: Any, network: Any, optim: OptimSpec, keep_checkpoints: int = 2
    ) -> None:
        self.s, self.network, self.optim = settings, network, optim
        self.keep = keep_checkpoints
        self.stats: dict[str, float] = {}

    def train_boundary(self, r: int, cam_folder: Path) -> BoundaryModule:
        loop = self.loop
        pl.seed_everything(loop.seed * 1000 + r + 300, workers=True, verbose=False)
        module = BoundaryModule(
            self.network(), PathIndex(self.s.radius), self.optim, loop.dm.labeled.ignore_index
        )
        loop.tracker.phase(r, "fit boundaries", len(loop.dm.labeled))
        loop.dm.labeled.set_pseudo_labels(cam_folder)
        try:
            trainer = loop.trainer_factory([], None, self.s.boundary_epochs)
            trainer.fit(module, train_dataloaders=loop.dm.train_dataloader())
        finally:
            loop.dm.labeled.set_pseudo_labels(None)
        if loop.rank_zero:
            loop.rundir.save_checkpoint(r, module.state_dict(), self.keep, stage=BOUNDARY_STAGE)
        return module

    def after_fit(self, r: int, fit: FitResult) -> None:
        if not self.s.pseudo_labels:
            return
        loop, tagged = self.loop, self.loop.dm.labeled.indices
        loop.tracker.phase(r, "CAMs", len(tagged))
        cam_folder, cam_stats = write_maps(
            loop, CAMS, r, fit.model, tagged, lambda f: CamWriter(f, loop, self.s)
        )
        boundary = self.train_boundary(r, cam_folder)
        bnd = boundary_scores(boundary, loop.dm.whole_test_dataloader(), self.s.boundary_tolerance)
        loop.tracker.phase(r, "random walk", len(tagged))
        walk_folder, walk_stats = write_maps(
            loop, WALK, r, fit.model, tagged, lambda f: WalkWriter(f, loop, self.s, boundary, bnd)
        )
        self.stats = {**cam_stats, **walk_stats}
        fit.eval_model = train_on_pseudo_labels(loop, r, walk_folder, self.keep)

    def evaluation_model(self, r: int) -> SegmentationModule | None:
        if not self.s.pseudo_labels:
            return None
        rundir = self.loop.rundir
        self.stats = {**rundir.folder_stats(CAMS, r), **rundir.folder_stats(WALK, r)}
        return self.loop.load_model(r, stage=2)

    def metrics_row(self, r: int) -> dict[str, float]:
        return dict(self.stats)


@torch.no_grad()
def boundary_scores(module: BoundaryModule, loader: Any, tolerance: float) -> dict[str, float]:
    """ODS and OIS F-measure (%) of the boundary network on a split, class-agnostic: its
    B against the boundaries of the ground-truth labels (``alseg.weak.boundary_eval``)."""
    was = module.training
    module.eval()
    probs, gts = [], []
    for batch in loader:
        B = module.boundary(batch["image"].to(module.device)).float().cpu().numpy()
        probs += list(B)
        gts += [label_boundaries(m.numpy(), module.ignore_index) for m in batch["mask"]]
    module.train(was)
    s = f_measure(probs, gts, tolerance=tolerance)
    return {"boundary_ods": round(100 * s.ods, 4), "boundary_ois": round(100 * s.ois, 4)}


def boundary_network(arch: str, encoder: str, encoder_weights: str | None) -> Any:
    """``() ->`` a fresh 2-output network of the experiment's architecture."""
    return lambda: build_network(arch, encoder, encoder_weights, 2)
