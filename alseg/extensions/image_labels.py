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
``pseudo_mIoU`` (the random-walk labels), over the tagged images; on the test split,
matched within ``weak.boundary_tolerance`` pixels: ``boundary_ods`` / ``boundary_ois``
(the boundary network's B, class-agnostic) and ``boundary_mf_ods`` / ``boundary_mf_ois``
(semantic boundaries: B where the evaluated model predicts class c, scored per class and
averaged; ``bF_<class>`` per class).

With a background class (``weak.background``, VOC / SBD; class 0) the tag model learns the
object classes only, the confident background is where every tagged CAM is at most
``weak.bg_threshold``, and the pseudo labels are background where no propagated CAM
(divided by its maximum) reaches ``weak.bg_score`` (IRN).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.data.label_maps import label_map_path, save_label_map
from alseg.extensions.base import Extension, FitResult, RoundContext
from alseg.extensions.maps import MapWriter, pct, write_maps
from alseg.extensions.stage2 import PSEUDO_STEP, PseudoLabelMaps, train_on_pseudo_labels
from alseg.models.segmentation import (
    OptimSpec,
    PredictOutputs,
    SegmentationModule,
    build_network,
)
from alseg.scatter import region_class_counts
from alseg.schema.sections import WeakConfig
from alseg.weak.boundary_eval import (
    class_boundaries,
    class_f_measures,
    f_measure,
    semantic_maps,
)
from alseg.weak.cam import cam_labels, confident_labels, multiscale_cams
from alseg.weak.paths import PathIndex, boundary_mil_loss, on_grid, strided_walk

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
        self,
        network: torch.nn.Module,
        index: PathIndex,
        optim: OptimSpec,
        ignore_index: int,
        background: bool = False,
        stride: int = 1,
    ) -> None:
        super().__init__(network, 2, ("interior", "boundary"), optim, ignore_index)
        self.index, self.background, self.stride = index, background, stride

    def boundary(self, image: torch.Tensor) -> torch.Tensor:
        """(N, H, W) boundary probabilities, the mean over the image and its flip (IRN)."""
        logits = self(image) + self(image.flip(-1)).flip(-1)
        return torch.softmax(logits / 2, dim=1)[:, 1]

    def _training_loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        B = torch.softmax(logits.float(), dim=1)[:, 1]
        B, target = on_grid(B, batch["target"], self.stride)  # IRN: pairs on a stride-4 grid
        assert target is not None
        loss = boundary_mil_loss(
            B, target, self.index, self.ignore_index, background=self.background
        )
        self.log("train/boundary_loss", loss, prog_bar=True, batch_size=logits.shape[0])
        return loss


class _TagWriter(MapWriter):
    """A pass over tagged images with the tag model: their multi-scale CAMs."""

    def __init__(
        self, folder: Path, loop: RoundContext, settings: WeakConfig, num_counts: int
    ) -> None:
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
        """(N, C) tags of the images; the background class (``weak.background``) is never
        tagged: it has no CAM of its own."""
        offsets = self.loop.dm.regions.offsets
        first = np.asarray([offsets[i] for i in indices], dtype=np.int64)
        tags = torch.from_numpy(self.loop.store.class_sets(first))
        if self.s.background:
            tags[:, 0] = False
        return tags

    def cams(self, batch: dict[str, Any]) -> tuple[list[int], torch.Tensor, torch.Tensor]:
        """Image indices, (N, C) tags, (N, C, H, W) CAMs."""
        indices = batch["index"].tolist()
        tags = self.tags(indices).to(batch["image"].device)
        C = self.C
        cams = multiscale_cams(
            lambda x: self.module(x)[:, :C], batch["image"], tags, self.s.cam_scales
        )
        return indices, tags, cams

    def bg_score(self) -> float | None:
        """The background's constant CAM (``weak.bg_score``), None without a background."""
        return float(self.s.bg_score) if self.s.background else None


class CamWriter(_TagWriter):
    """Writes the confident areas; counts the CAM labels' confusion matrix, confident
    pixels right, confident pixels, labeled pixels."""

    def __init__(self, folder: Path, loop: RoundContext, settings: WeakConfig) -> None:
        C = loop.store.num_classes
        super().__init__(folder, loop, settings, C * C + 3)

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        indices, tags, cams = self.cams(batch)
        s, C = self.s, self.C
        bg = self.bg_score()
        conf = confident_labels(
            cams, tags, s.fg_threshold, s.bg_threshold, bg is not None, self.ignore
        )
        labels = cam_labels(cams, tags, bg)
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
    propagated CAMs, and the background's ``weak.bg_score`` if there is one); counts their
    confusion matrix."""

    def __init__(
        self, folder: Path, loop: RoundContext, settings: WeakConfig, boundary: BoundaryModule
    ) -> None:
        C = loop.store.num_classes
        super().__init__(folder, loop, settings, C * C)
        radius = settings.walk_radius or settings.radius
        self.boundary_module, self.index = boundary, PathIndex(int(radius))
        self.stride = int(settings.stride)

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        # the CAMs of the first pass are recomputed rather than kept: C x H x W floats per
        # image would not fit in memory at Cityscapes scale
        indices, tags, cams = self.cams(batch)
        bnd = self.boundary_module.to(batch["image"].device).eval()
        B = bnd.boundary(batch["image"]).float()
        for b, index in enumerate(indices):
            walked = strided_walk(
                cams[b], B[b], self.index, self.s.beta, self.s.walk_steps, self.stride
            )
            walked = walked / walked.max().clamp_min(1e-12)  # IRN: the max is 1
            pseudo = cam_labels(walked[None], tags[b][None], self.bg_score())[0].cpu()
            save_label_map(label_map_path(self.folder, index), pseudo)
            self.counts += confusion(pseudo, self.mask_fn(index), self.C, self.ignore)

    def stats(self) -> dict[str, float]:
        return {"pseudo_mIoU": miou(self.counts, self.C)}


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
        self, settings: WeakConfig, network: Any, optim: OptimSpec, keep_checkpoints: int = 2
    ) -> None:
        self.s, self.network, self.optim = settings, network, optim
        self.keep = keep_checkpoints
        self.stats: dict[str, float] = {}
        self.boundary: tuple[int, BoundaryModule] | None = None  # (round, its network)

    def boundary_module(self) -> BoundaryModule:
        loop = self.loop
        return BoundaryModule(
            self.network(),
            PathIndex(self.s.radius),
            self.optim,
            loop.dm.labeled.ignore_index,
            bool(self.s.background),
            int(self.s.stride),
        )

    def train_boundary(self, r: int, cam_folder: Path) -> BoundaryModule:
        loop = self.loop
        pl.seed_everything(loop.seed * 1000 + r + 300, workers=True, verbose=False)
        module = self.boundary_module()
        loop.tracker.phase(r, "fit boundaries", len(loop.dm.labeled))
        loop.dm.labeled.set_step(PSEUDO_STEP, PseudoLabelMaps(cam_folder))
        try:
            trainer = loop.trainer_factory([], None, self.s.boundary_epochs)
            loader = loop.dm.train_dataloader(trainer.world_size)
            trainer.fit(module, train_dataloaders=loader)
        finally:
            loop.dm.labeled.set_step(PSEUDO_STEP, None)
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
        self.boundary = (r, boundary)
        loop.tracker.phase(r, "random walk", len(tagged))
        walk_folder, walk_stats = write_maps(
            loop, WALK, r, fit.model, tagged, lambda f: WalkWriter(f, loop, self.s, boundary)
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
        if not self.s.pseudo_labels:
            return dict(self.stats)
        loop = self.loop
        if self.boundary is None or self.boundary[0] != r:  # resumed: from its checkpoint
            module = self.boundary_module()
            module.load_state_dict(loop.rundir.load_checkpoint(r, stage=BOUNDARY_STAGE))
            self.boundary = (r, module)
        loop.tracker.phase(r, "boundary F-measure")
        scores = boundary_scores(
            self.boundary[1],
            loop.evaluation_model(r),
            loop.dm.whole_test_dataloader(),
            getattr(loop.dm.test_set, "class_boundaries", None),
            range(1 if self.s.background else 0, loop.store.num_classes),
            loop.dm.class_names,
            self.s.boundary_tolerance,
            float(self.s.boundary_max_dist),
        )
        return {**self.stats, **scores}


@torch.no_grad()
def boundary_scores(
    module: BoundaryModule,
    segmenter: SegmentationModule,
    loader: Any,
    gt_boundaries: Any,
    classes: Any,
    names: Any,
    tolerance: float | None,
    max_dist: float = 0.0075,
) -> dict[str, float]:
    """F-measures (%) on a split: ODS / OIS of the boundary network's B against the
    class-agnostic ground truth; mF ODS / OIS of the semantic maps (B where ``segmenter``
    predicts class c) over ``classes``, and each class's ODS (``bF_<name>``).

    ``gt_boundaries``: ``index -> (C, H, W)`` bool, the data set's own class boundaries
    (SBD), or None where it has none; then the boundaries of the label maps
    (``class_boundaries``).
    """
    states = module.training, segmenter.training
    module.eval()
    segmenter.eval()
    probs, sem, gts = [], [], []
    C = segmenter.num_classes
    for batch in loader:
        image = batch["image"].to(module.device)
        B = module.boundary(image).float().cpu().numpy()
        pred = segmenter(image.to(segmenter.device))[:, :C].argmax(1).cpu().numpy()
        for b, index in enumerate(batch["index"].tolist()):
            mask = batch["mask"][b].numpy()
            own = None if gt_boundaries is None else gt_boundaries(index)
            gt = class_boundaries(mask, C, module.ignore_index) if own is None else own
            probs.append(B[b])
            sem.append(semantic_maps(B[b], pred[b], C))
            gts.append(gt)
    module.train(states[0])
    segmenter.train(states[1])
    # the matching distance: a share of each image's diagonal, or fixed pixels if given
    dist: dict[str, Any] = (
        {"max_dist": max_dist} if tolerance is None else {"tolerance": float(tolerance)}
    )
    agnostic = f_measure(probs, [np.asarray(g.any(0)) for g in gts], **dist)
    per_class = class_f_measures(sem, gts, list(classes), **dist)
    out = {"boundary_ods": agnostic.ods, "boundary_ois": agnostic.ois}
    if per_class:
        out["boundary_mf_ods"] = float(np.mean([s.ods for s in per_class.values()]))
        out["boundary_mf_ois"] = float(np.mean([s.ois for s in per_class.values()]))
    out.update({f"bF_{names[c]}": s.ods for c, s in per_class.items()})
    return {k: round(100 * v, 4) for k, v in out.items()}


def boundary_network(arch: str, encoder: str, encoder_weights: str | None) -> Any:
    """``() ->`` a fresh 2-output network of the experiment's architecture."""
    return lambda: build_network(arch, encoder, encoder_weights, 2)
