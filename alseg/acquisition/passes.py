"""The pool's scoring passes: ``score_pool`` and its AcquisitionCallback.

The callback only dispatches: each predicted batch goes to the PoolScorer (reduced to
region tensors at once), and at the end of the pass the statistics are combined over
ranks with the trainer's strategy, so that every rank holds the same ``PoolStats``. The
round loop hands them to ``Strategy.end_pass`` between passes and, after the last one,
to the pure selection step (``alseg.acquisition.decide``) on rank 0, whose result it
broadcasts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytorch_lightning as pl

from alseg.acquisition.base import PoolStats, Stats, Strategy
from alseg.acquisition.scorer import PoolScorer
from alseg.models.prediction import PredictionCallback, sum_over_ranks
from alseg.models.segmentation import PredictOutputs


class AcquisitionCallback(PredictionCallback):
    """Args:
    scorer: accumulates the strategy's region statistics.
    outputs: what the model returns for the strategy (``Strategy.outputs``).
    """

    def __init__(self, scorer: PoolScorer, outputs: PredictOutputs) -> None:
        super().__init__(outputs)
        self.scorer = scorer
        self.stats: PoolStats | None = None
        self.pass_index, self.context = 0, Stats()

    def begin(self, pass_index: int, context: Stats) -> None:
        """Prepare pass ``pass_index`` with the strategy's context of the previous pass."""
        self.pass_index, self.context = pass_index, context
        self.stats = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        temperature = getattr(pl_module, "head_temperature", 1.0)
        self.scorer.reset(self.pass_index, self.context, float(temperature))

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        self.scorer.update(outputs, batch["regions"], batch["index"])

    def finish(self, trainer: pl.Trainer) -> None:
        multi = trainer.world_size > 1
        ts = trainer.strategy
        self.stats = self.scorer.compute(
            sum_over_ranks(trainer),
            (lambda t: ts.all_gather(t)) if multi else None,
            (lambda obj: ts.broadcast(obj, src=0)) if multi else None,
        )


def score_pool(
    strategy: Strategy,
    model: pl.LightningModule,
    make_trainer: Callable[[list[pl.Callback]], pl.Trainer],
    datamodule: Any,
    labeled: np.ndarray,
    channels_last: bool = False,
) -> tuple[PoolStats, pl.Trainer]:
    """The strategy's statistics of the pool (``strategy.passes`` prediction passes, each
    given the context the strategy made of the previous one), and the trainer that ran them.

    Args:
        datamodule: has ``regions`` (the pool's ``RegionSet``) and ``pool_dataloader()``.
        labeled: (R_total,) bool, regions already labeled.
    """
    regions = datamodule.regions
    scorer = PoolScorer(strategy, regions.num_regions, regions.offsets, labeled)
    callback = AcquisitionCallback(scorer, strategy.outputs(channels_last))
    trainer = make_trainer([callback])
    context: Stats = {}  # what the strategy made of the previous pass
    for p in range(strategy.passes):
        callback.begin(p, context)
        trainer.predict(model, dataloaders=datamodule.pool_dataloader(), return_predictions=False)
        assert callback.stats is not None
        if p < strategy.passes - 1:
            context = strategy.end_pass(p, callback.stats)
    assert callback.stats is not None
    return callback.stats, trainer
