"""``alseg bench pruning``: the cost of the pruning-score callbacks over plain training.

The same training run (``experiment=prune_shapes``: a ResNet-18 classifier on the 600
shapes images, or ``--segmentation``: DeepLabV3+ on the synthetic scenes) timed without
callbacks and with each scoring callback alone, one after the other in one process:

* ``dynamics``: forgetting, dynamic uncertainty and AUM from every training step's logits;
* ``el2n``: one pass over the training images after one epoch;
* ``grand``: per-sample gradients (all parameters and the last layer) after one epoch.

Each figure is the best of ``--repeat`` runs, as a ratio to plain training.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from alseg.bench.common import emit
from alseg.build import model_spec, quiet_lightning, trainer_factory
from alseg.config import compose
from alseg.parts import build_parts
from alseg.prune.callbacks import EpochScores, TrainingDynamics
from alseg.prune.run import label_images


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="alseg bench pruning")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--segmentation", action="store_true", help="synthetic scenes")
    p.add_argument("--quick", action="store_true", help="64 images, 2 epochs, 1 repeat")
    args = p.parse_args(argv)
    overrides = [
        "experiment=prune_synthetic" if args.segmentation else "experiment=prune_shapes",
        f"trainer.max_epochs={args.epochs}",
        "trainer.enable_progress_bar=false",
        "logger=none",
    ]
    if args.quick:
        args.epochs, args.repeat = 2, 1
        overrides += ["data.num_train=64", "trainer.max_epochs=2"]
    quiet_lightning()
    cfg = compose(overrides)
    parts = build_parts(cfg, progress=False)
    n = len(parts.train)
    label_images(parts, np.arange(n))
    make = trainer_factory(
        parts.settings.trainer, None, Path(tempfile.mkdtemp(prefix="alseg-bench-"))
    )

    def fit(callbacks: list[pl.Callback]) -> float:
        pl.seed_everything(0, verbose=False)
        model = model_spec(parts.settings, parts.train).build()
        trainer = make(callbacks, -1, None)
        t0 = time.perf_counter()
        trainer.fit(model, train_dataloaders=parts.datamodule.train_dataloader(trainer.world_size))
        return time.perf_counter() - t0

    def best(make_callbacks: Any) -> float:
        return min(fit(make_callbacks()) for _ in range(args.repeat))

    bs = int(cfg.data.pool_batch_size)
    plain = best(lambda: [])
    dynamics = best(lambda: [TrainingDynamics(n)])
    el2n = best(lambda: [EpochScores(parts.train, n, [1], [], bs)])
    grand = best(lambda: [EpochScores(parts.train, n, [], [1], bs, int(cfg.prune.grand_chunk))])
    emit(
        "pruning_scores",
        task="segmentation" if args.segmentation else "classification",
        images=n,
        epochs=int(cfg.trainer.max_epochs),
        plain_s=round(plain, 2),
        dynamics_overhead_pct=round(100 * (dynamics / plain - 1), 1),
        el2n_overhead_pct=round(100 * (el2n / plain - 1), 1),
        grand_overhead_pct=round(100 * (grand / plain - 1), 1),
        target="dynamics (forgetting) and el2n < 5 %",
    )
