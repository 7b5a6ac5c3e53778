"""MulActSeg's stage 2 (``stage2.enabled``; docs/methods.md): after each round's stage-1
fit, a prediction pass over the labeled images turns their multi-class region answers into
pseudo labels (``alseg.models.pseudo_labels``), written to
``pseudo_labels/round_XX/<image>.png``; then a re-initialised model is trained on them with
plain CE and evaluated. Acquisition keeps using the stage-1 model. The pseudo labels'
agreement with ground truth is recorded (``pseudo_acc``, ``pseudo_coverage``), never used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from alseg.data.label_maps import label_map_path, load_label_map, save_label_map
from alseg.extensions.base import Extension, FitPlan, FitResult, RoundContext
from alseg.extensions.maps import MapWriter, pct, write_maps
from alseg.models.pseudo_labels import propagate_pseudo_labels
from alseg.models.segmentation import PredictOutputs, SegmentationModule

KIND = "pseudo_labels"

PSEUDO_STEP = "pseudo_labels"  # the name of the target step that trains on label maps


class PseudoLabelWriter(MapWriter):
    """Per labeled image: decoder features L2-normalised and upsampled to the image
    (``stage2_features``), the softmax of the classifier's raw scores over every output (as
    the official code: the raw cosine, no temperature; a void output included, so void
    prototypes label pixels with the void class C), ``propagate_pseudo_labels`` with the
    image's answers.
    Counts: pixels correct, pixels assigned, non-void pixels (against ground truth)."""

    def __init__(self, folder: Path, loop: RoundContext) -> None:
        super().__init__(PredictOutputs(features=True), folder, 3)
        self.store, self.regions = loop.store, loop.dm.regions
        self.mask_fn, self.ignore = loop.dm.labeled.mask_fn, loop.dm.labeled.ignore_index
        self.labeled = self.store.labeled_mask()
        self.head_temperature = 1.0

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        super().on_predict_start(trainer, pl_module)
        self.head_temperature = float(pl_module.head_temperature)

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        feats, logits = outputs["features"], outputs["logits"]
        void_bit = logits.shape[1] > self.store.num_classes
        size = logits.shape[-2:]
        feats = stage2_features(feats.float(), size)
        probs = torch.softmax(logits.float() * self.head_temperature, dim=1)  # raw scores
        for b, index in enumerate(batch["index"].tolist()):
            ids = np.arange(self.regions.offsets[index], self.regions.offsets[index + 1])
            pseudo = propagate_pseudo_labels(
                feats[b],
                probs[b],
                batch["regions"][b],
                torch.from_numpy(self.store.class_sets(ids, void_bit)),
                torch.from_numpy(self.labeled[ids]),
                self.ignore,
            ).cpu()
            save_label_map(label_map_path(self.folder, index), pseudo)
            gt = self.mask_fn(index)
            valid = gt != self.ignore
            assigned = (pseudo != self.ignore) & valid
            hit = int((pseudo[assigned] == gt[assigned]).sum())
            self.counts += torch.tensor([hit, int(assigned.sum()), int(valid.sum())])

    def stats(self) -> dict[str, float]:
        hit, assigned, valid = self.counts.tolist()
        return {"pseudo_acc": pct(hit, assigned), "pseudo_coverage": pct(assigned, valid)}


def stage2_features(feats: torch.Tensor, size: Any) -> torch.Tensor:
    """(B, D, h, w) decoder features -> (B, D, H, W): L2-normalised at their resolution, then
    upsampled bilinearly, as MulActSeg's cosine head (``DeepLabHeadV3PlusWN``) normalises and
    its ``feat_forward`` interpolates (no second normalisation: the prototype similarities
    are dot products of the upsampled unit vectors)."""
    return F.interpolate(F.normalize(feats, dim=1), size=size, mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class PseudoLabelMaps:
    """A target step (``LabeledView.set_step``): train on the label map of each image in
    ``folder`` instead of the store's labels (stage 2, the boundary network's CAM labels)."""

    folder: Path
    replaces: bool = True

    def __call__(self, index: int, target: torch.Tensor | None) -> torch.Tensor:
        return load_label_map(label_map_path(self.folder, index))


def train_on_pseudo_labels(
    loop: RoundContext, r: int, folder: Path, keep: int
) -> SegmentationModule:
    """Round ``r``'s stage-2 model: re-initialised, trained on the label maps in ``folder``
    with CE, saved as ``checkpoints/round_XX_stage2.pt``."""
    loop.dm.labeled.set_step(PSEUDO_STEP, PseudoLabelMaps(folder))
    try:
        model, _ = loop.train(r, FitPlan(stage=2))
    finally:
        loop.dm.labeled.set_step(PSEUDO_STEP, None)
    if loop.rank_zero:
        loop.rundir.save_checkpoint(r, model.state_dict(), keep=keep, stage=2)
    return model


class Stage2(Extension):
    """Pseudo labels from the stage-1 model, then a stage-2 model trained on them."""

    name = "stage2"

    def __init__(self, keep_checkpoints: int = 2) -> None:
        self.keep = keep_checkpoints
        self.stats: dict[str, float] = {}

    def after_fit(self, r: int, fit: FitResult) -> None:
        loop = self.loop
        loop.tracker.phase(r, "pseudo labels", len(loop.dm.labeled))
        folder, self.stats = write_maps(
            loop,
            KIND,
            r,
            fit.model,
            loop.dm.labeled.indices,
            lambda f: PseudoLabelWriter(f, loop),
        )
        fit.eval_model = train_on_pseudo_labels(loop, r, folder, self.keep)

    def evaluation_model(self, r: int) -> SegmentationModule:
        self.stats = self.loop.rundir.folder_stats(KIND, r)
        return self.loop.load_model(r, stage=2)

    def metrics_row(self, r: int) -> dict[str, float]:
        return dict(self.stats)
