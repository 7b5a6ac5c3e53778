"""Lightning callbacks that record per-sample pruning scores while a model trains.

``TrainingDynamics`` reads the logits of every training step (the module returns them
with ``record_train_logits``): per epoch and sample the accuracy and the probability and
logit margins, as sums and counts that every rank reduces at the end of the epoch (a
sample presented on any rank is recorded, the same arrays on every rank). The true-class
probability of dynamic uncertainty comes, as in its official code, from an eval-mode pass
on the batch's un-augmented images after the training forward and before the update.
``EpochScores`` runs a pass over the training images (no augmentation, sharded over
ranks, summed) at given epochs for EL2N and GraNd, with rank 0's batch-norm statistics on
every rank (DDP does not synchronise buffers).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from alseg.distributed import adopt_rank_zero_state
from alseg.models.losses import masked_cross_entropy
from alseg.models.prediction import sum_over_ranks
from alseg.prune.scores import dynamic_uncertainty, forgetting, grand, last_layer, pixel_statistics

DYNAMICS = ("p_true", "acc", "margin", "logit_margin")


class TrainingDynamics(pl.Callback):
    """Args:
    num_samples: training samples (indices 0..N-1, the ``index`` of a batch).
    dataset: the un-augmented training samples (items with "image", "mask"), for the
        eval-mode pass of dynamic uncertainty; None: p_y of the training pass.
    """

    def __init__(self, num_samples: int, dataset: Any = None) -> None:
        self.n, self.dataset = num_samples, dataset
        self._index: torch.Tensor | None = None
        self.epochs: dict[str, list[np.ndarray]] = {k: [] for k in DYNAMICS}
        self._sums: dict[str, torch.Tensor] = {}
        self._count: torch.Tensor | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.record_train_logits = True  # type: ignore[assignment]

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.record_train_logits = False  # type: ignore[assignment]

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dev = pl_module.device
        self._sums = {k: torch.zeros(self.n, device=dev, dtype=torch.float64) for k in DYNAMICS}
        self._count = torch.zeros(self.n, device=dev, dtype=torch.float64)
        self._eval_sum = torch.zeros(self.n, device=dev, dtype=torch.float64)
        self._eval_count = torch.zeros(self.n, device=dev, dtype=torch.float64)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._index = batch["index"]

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        """p_y of the un-augmented images, the model in eval mode, before the update."""
        if self.dataset is None or self._index is None:
            return
        index = self._index.cpu()
        items = [self.dataset[int(i)] for i in index]
        dev = pl_module.device
        x = torch.stack([it["image"] for it in items]).to(dev)
        y = torch.stack([torch.as_tensor(it["mask"]) for it in items]).to(dev)
        C, ignore = int(pl_module.num_classes), int(pl_module.ignore_index)  # type: ignore[arg-type]
        was = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                p_true = pixel_statistics(pl_module(x)[:, :C], y, ignore)["p_true"]
        finally:
            pl_module.train(was)
        seen = ~torch.isnan(p_true)
        i = index.to(dev)[seen]
        self._eval_sum.index_add_(0, i, p_true[seen].double())
        self._eval_count.index_add_(0, i, torch.ones_like(i, dtype=torch.float64))

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        C = int(pl_module.num_classes)  # type: ignore[arg-type]
        stats = pixel_statistics(
            outputs["logits"][:, :C],
            batch["target"],
            int(pl_module.ignore_index),  # type: ignore[arg-type]
        )
        seen = ~torch.isnan(stats["acc"])
        index = batch["index"].to(pl_module.device)[seen]
        assert self._count is not None
        self._count.index_add_(0, index, torch.ones_like(index, dtype=torch.float64))
        for k in DYNAMICS:
            self._sums[k].index_add_(0, index, stats[k][seen].double())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        reduce = sum_over_ranks(trainer)
        assert self._count is not None
        sums = dict(self._sums)
        counts = dict.fromkeys(DYNAMICS, self._count)
        if self.dataset is not None:  # p_y of the eval-mode pass replaces the training one
            sums["p_true"], counts["p_true"] = self._eval_sum, self._eval_count
        for k in DYNAMICS:
            total = reduce(sums[k]) if reduce else sums[k]
            count = reduce(counts[k]) if reduce else counts[k]
            mean = (total / count).where(count > 0, torch.full_like(total, float("nan")))
            self.epochs[k].append(mean.cpu().numpy())

    def scores(self, window: int) -> dict[str, np.ndarray]:
        """forgetting, dyn_unc (with ``window`` epochs), aum (the mean logit margin) and
        aum_prob (the mean probability margin, CCS's)."""
        acc, p_true = (np.stack(self.epochs[k]) for k in ("acc", "p_true"))

        def mean(key: str) -> np.ndarray:
            v = np.stack(self.epochs[key])
            presented = (~np.isnan(v)).sum(0)
            # a sample never presented (a short run dropping last batches) has none: NaN
            return np.nansum(v, axis=0) / np.where(presented > 0, presented, np.nan)

        out = {
            "forgetting": forgetting(acc),
            "aum": mean("logit_margin"),
            "aum_prob": mean("margin"),
        }
        if len(p_true) > window:
            out["dyn_unc"] = dynamic_uncertainty(p_true, window)
        return out


class EpochScores(pl.Callback):
    """EL2N (and GraNd, over all parameters and over the last layer) of every training
    image at the end of the given epochs.

    Args:
        dataset: the training images, items with "image", "mask" (the full labels) and
            "index".
        num_samples: its size.
        el2n_epochs, grand_epochs: epochs after which to score (0: at initialization).
        batch_size: images per scoring batch.
        grand_chunk: samples per vmap chunk of GraNd (memory).
    """

    def __init__(
        self,
        dataset: Dataset,
        num_samples: int,
        el2n_epochs: list[int],
        grand_epochs: list[int],
        batch_size: int = 32,
        grand_chunk: int = 4,
    ) -> None:
        self.dataset, self.n = dataset, num_samples
        self.el2n_epochs, self.grand_epochs = set(el2n_epochs), set(grand_epochs)
        self.batch_size, self.grand_chunk = batch_size, grand_chunk
        self.values: dict[str, list[np.ndarray]] = {"el2n": [], "grand": [], "grand_last": []}

    def _loader(self) -> DataLoader:
        from alseg.data.datamodule import EvalShardSampler, collate

        ds = self.dataset
        return DataLoader(ds, self.batch_size, sampler=EvalShardSampler(ds), collate_fn=collate)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._score(trainer, pl_module, 0)  # epoch 0: at initialization (GraNd's paper)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._score(trainer, pl_module, trainer.current_epoch + 1)

    def _score(self, trainer: pl.Trainer, pl_module: pl.LightningModule, e: int) -> None:
        kinds = [
            k for k, at in (("el2n", self.el2n_epochs), ("grand", self.grand_epochs)) if e in at
        ]
        if not kinds:
            return
        # score with rank 0's batch-norm statistics everywhere: the shards come from one model
        adopt_rank_zero_state(trainer, pl_module, buffers_only=True)
        was_training = pl_module.training
        pl_module.eval()
        try:
            sums = self._pass(pl_module, kinds)
        finally:
            pl_module.train(was_training)
        reduce = sum_over_ranks(trainer)
        for k, v in sums.items():
            self.values[k].append((reduce(v) if reduce else v).cpu().numpy())

    def _pass(self, module: pl.LightningModule, kinds: list[str]) -> dict[str, torch.Tensor]:
        dev = module.device
        C, ignore = int(module.num_classes), int(module.ignore_index)  # type: ignore[arg-type]
        keys = ["el2n"] if "el2n" in kinds else []
        keys += ["grand", "grand_last"] if "grand" in kinds else []
        sums = {k: torch.zeros(self.n, device=dev, dtype=torch.float64) for k in keys}
        last = last_layer(module)

        def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return masked_cross_entropy(out[:, :C], y, ignore)

        for batch in self._loader():
            x, y, i = batch["image"].to(dev), batch["mask"].to(dev), batch["index"].to(dev)
            if "el2n" in keys:
                with torch.no_grad():
                    stats = pixel_statistics(module(x)[:, :C], y, ignore)
                sums["el2n"].index_add_(0, i, torch.nan_to_num(stats["el2n"]).double())
            if "grand" in keys:
                for k, names in (("grand", None), ("grand_last", last)):
                    g = grand(module, x, y, loss, names, self.grand_chunk)
                    sums[k].index_add_(0, i, g.double())
        return sums

    def scores(self) -> dict[str, np.ndarray]:
        """The mean over the scored epochs of each score."""
        return {k: np.mean(v, axis=0) for k, v in self.values.items() if v}
