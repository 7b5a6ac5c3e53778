"""AcquisitionCallback: scores the pool inside ``trainer.predict`` and selects.

The callback only dispatches: each predicted batch goes to the PoolScorer (reduced to
region tensors at once, so ``return_predictions=False`` keeps nothing else), and at the
end of the pass the region statistics are summed over ranks with the trainer's strategy,
rank 0 runs the pure selection helper, and the answer is broadcast so that every rank
applies the same LabelStore update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.strategies import Stats
from alseg.data.labels import Annotations


class AcquisitionCallback(pl.Callback):
    """Args:
    scorer: accumulates region statistics of the strategy.
    select: pure helper, region statistics -> Annotations (scores, selects, annotates).
    """

    def __init__(self, scorer: PoolScorer, select: Callable[[Stats], Annotations]) -> None:
        self.scorer, self.select = scorer, select
        self.result: Annotations | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.scorer.reset()
        self.result = None

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.scorer.update(outputs, batch["regions"], batch["index"])

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        def all_reduce(t: torch.Tensor) -> torch.Tensor:
            return trainer.strategy.reduce(t, reduce_op="sum")

        stats = self.scorer.compute(all_reduce if trainer.world_size > 1 else None)
        result = self.select(stats) if trainer.is_global_zero else None
        self.result = trainer.strategy.broadcast(result, src=0)
