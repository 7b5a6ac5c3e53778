"""The base of alseg's prediction-pass callbacks.

A prediction pass (``trainer.predict`` over pool or labeled images) is declared by what the
model must return (``PredictOutputs``); the callback configures the module for the pass and
restores it afterwards, handles each batch's outputs at once (``return_predictions=False``
keeps nothing else) and, at the end of the pass, combines what it accumulated over the
ranks with the trainer's strategy (DDP shards the images; AMP comes from
``trainer.precision``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch

from alseg.models.segmentation import PredictOutputs, SegmentationModule

Reduce = Callable[[torch.Tensor], torch.Tensor]


def sum_over_ranks(trainer: pl.Trainer) -> Reduce | None:
    """A function summing a tensor over the trainer's ranks; None in one process."""
    if trainer.world_size <= 1:
        return None
    ts = trainer.strategy
    return lambda t: ts.reduce(t, reduce_op="sum")


class PredictionCallback(pl.Callback):
    """Configures the module's outputs for a prediction pass (``outputs``) and resets them.

    Subclasses implement ``on_batch(outputs, batch)`` and ``finish(trainer)``.
    """

    def __init__(self, outputs: PredictOutputs) -> None:
        self.outputs = outputs

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, SegmentationModule):
            raise TypeError(f"{type(pl_module).__name__} is not a SegmentationModule")
        pl_module.configure_prediction(self.outputs)

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.on_batch(outputs, batch)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert isinstance(pl_module, SegmentationModule)
        pl_module.configure_prediction(PredictOutputs())
        self.finish(trainer)

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def finish(self, trainer: pl.Trainer) -> None:
        """End of the pass (every rank): combine what was accumulated."""
