"""Prediction passes that write one label map per image into the run dir (stage-2 pseudo
labels, sieve masks), sharded over ranks and committed as one folder with a manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.extensions.base import RoundContext
from alseg.models.prediction import PredictionCallback, sum_over_ranks
from alseg.models.segmentation import PredictOutputs, SegmentationModule


class MapWriter(PredictionCallback):
    """A prediction pass that writes label maps into ``folder`` and accumulates ``counts``
    (float64), summed over ranks at the end of the pass."""

    def __init__(self, outputs: PredictOutputs, folder: Path, num_counts: int) -> None:
        super().__init__(outputs)
        self.folder = folder
        self.counts = torch.zeros(num_counts, dtype=torch.float64)

    def finish(self, trainer: pl.Trainer) -> None:
        reduce = sum_over_ranks(trainer)
        if reduce is not None:  # a collective: every rank has written its maps after it
            self.counts = reduce(self.counts.to(trainer.strategy.root_device)).cpu()

    def stats(self) -> dict[str, float]:
        raise NotImplementedError


def write_maps(
    loop: RoundContext,
    kind: str,
    r: int,
    model: SegmentationModule,
    indices: np.ndarray,
    writer: Callable[[Path], MapWriter],
) -> tuple[Path, dict[str, float]]:
    """Run ``writer(folder)`` over the pool images ``indices`` with ``model`` and commit the
    folder ``<kind>/round_<r>/`` (rank 0); returns it and the writer's stats."""
    rundir = loop.rundir
    cb = writer(rundir.partial_folder(kind, r))
    trainer = loop.trainer_factory([cb])
    if len(indices):  # the same on every rank
        loader = loop.dm.images_dataloader(indices)
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    stats = cb.stats()
    if loop.rank_zero:
        rundir.publish_folder(kind, r, stats)
    if trainer.world_size > 1:
        trainer.strategy.barrier()  # the folder is in place for every rank
    return rundir.round_folder(kind, r), stats


def pct(a: float, b: float) -> float:
    """100 a / b rounded to 4 digits; NaN when b is 0."""
    return round(100.0 * a / b, 4) if b else float("nan")
