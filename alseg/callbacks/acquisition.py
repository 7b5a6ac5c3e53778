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
    channels_last: score with NHWC memory format (AMP comes from ``trainer.precision``,
        e.g. ``bf16-mixed``, which Lightning applies to ``predict`` too).

    The loop calls ``trainer.predict`` ``strategy.passes`` times with this callback; between
    passes every rank hands the combined statistics to ``strategy.end_pass``.
    """

    def __init__(
        self,
        scorer: PoolScorer,
        select: Callable[[Stats], Annotations],
        channels_last: bool = False,
    ) -> None:
        self.scorer, self.select, self.channels_last = scorer, select, channels_last
        self.pass_index = 0
        self.result: Annotations | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        strategy = self.scorer.strategy
        pl_module.mc_samples = strategy.mc_samples  # type: ignore[assignment]
        pl_module.predict_features = strategy.needs_features  # type: ignore[assignment]
        if strategy.needs_domain:
            if not hasattr(pl_module, "predict_domain"):
                raise ValueError(
                    f"{strategy.name} needs a domain discriminator: set adaptation.alignment=dann"
                )
            pl_module.predict_domain = True  # type: ignore[assignment]
        if self.channels_last:
            pl_module.channels_last = True  # type: ignore[assignment]
            pl_module.to(memory_format=torch.channels_last)
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
        pl_module.mc_samples, pl_module.predict_features = 1, False  # type: ignore[assignment]
        if hasattr(pl_module, "predict_domain"):
            pl_module.predict_domain = False  # type: ignore[assignment]
        if self.channels_last:
            pl_module.channels_last = False  # type: ignore[assignment]
            pl_module.to(memory_format=torch.contiguous_format)
        ts = trainer.strategy
        multi = trainer.world_size > 1
        stats = self.scorer.compute(
            (lambda t: ts.reduce(t, reduce_op="sum")) if multi else None,
            (lambda t: ts.all_gather(t)) if multi else None,
            (lambda obj: ts.broadcast(obj, src=0)) if multi else None,
        )
        strategy = self.scorer.strategy
        if self.pass_index < strategy.passes - 1:
            strategy.end_pass(self.pass_index, stats)
            self.pass_index += 1
            return
        self.pass_index = 0
        result = self.select(stats) if trainer.is_global_zero else None
        self.result = ts.broadcast(result, src=0)
