"""The pruning protocol: score the full labeled set, then retrain on a kept subset.

``alseg prune score``: for each of ``prune.score_seeds`` a model trains on every labeled
training image (the images fully labeled by the annotator) with the scoring callbacks;
``scores.parquet`` holds each score per seed and averaged (columns ``<score>_seed<s>`` and
``<score>``), with ``index`` and ``class`` (the image's label, or its dominant class in
segmentation). ``alseg prune retrain prune.scores=FILE prune.keep=0.5 prune.by=el2n``: a
model trained from scratch on the kept images with as many *iterations* as the full run
(``trainer.max_epochs`` epochs over all images), evaluated on val and test; the kept
indices are saved in the run dir (``kept.json``). No model selection: the last model is
evaluated.

Run dir: config.yaml, state.json (phase "done" at the end), metrics.csv (one row per
trained model), results.json, scores.parquet (score) or kept.json (retrain).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl

from alseg.atomic import csv_text
from alseg.build import (
    Parts,
    build_parts,
    model_spec,
    trainer_factory,
)
from alseg.prune.callbacks import EpochScores, TrainingDynamics
from alseg.prune.protocol import PruneRunBase
from alseg.prune.scores import SCORES
from alseg.prune.select import select
from alseg.rundir import RunDirError


def label_images(parts: Parts, images: np.ndarray) -> None:
    """Buy every region of ``images`` from the annotator (full labels of those images)."""
    offsets = parts.regions.offsets
    ids = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in images])
    parts.store.add(parts.oracle.annotate(ids), 0)
    parts.datamodule.refresh()


def image_classes(parts: Parts) -> np.ndarray:
    """(N,) each training image's most frequent labeled class (its class, for a
    classifier)."""
    ds, C = parts.train, int(parts.train.num_classes)
    out = np.empty(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        m = ds.mask(i).reshape(-1)
        m = m[m != ds.ignore_index]
        out[i] = int(np.bincount(m.numpy(), minlength=C).argmax()) if len(m) else -1
    return out


class PruneRun(PruneRunBase[Parts]):
    """A pruning run of images (module docstring)."""

    def prepare(self) -> Parts:
        """What ``_score`` and ``_retrain`` work on: the experiment's parts."""
        return build_parts(self.cfg, progress=bool(self.cfg.trainer.enable_progress_bar))

    # -- training --------------------------------------------------------------------------
    def full_steps(self, n: int) -> int:
        """The iterations of ``trainer.max_epochs`` epochs over ``n`` images."""
        b = int(self.cfg.data.batch_size)
        per_epoch = n // b if n > b else 1  # the train loader drops a last partial batch
        return int(self.cfg.trainer.max_epochs) * per_epoch

    def fit(
        self, parts: Parts, seed: int, callbacks: list[pl.Callback], max_steps: int | None = None
    ) -> dict[str, float]:
        """Train a fresh model on the labeled images; its val and test metrics."""
        pl.seed_everything(seed, workers=True, verbose=False)
        model = model_spec(parts.settings, parts.train).build()
        # fits log to the console; the run's W&B record is its scores and results
        make = trainer_factory(parts.settings.trainer, None, self.rundir.path)
        steps = max_steps if max_steps is not None else -1
        trainer = make(callbacks, steps, -1 if max_steps is not None else None)
        trainer.fit(model, train_dataloaders=parts.datamodule.train_dataloader(trainer.world_size))
        self.model = model
        evaluator = make([])
        model.last_metrics = {}
        evaluator.validate(model, dataloaders=parts.datamodule.val_dataloader(), verbose=False)
        evaluator.test(model, dataloaders=parts.datamodule.test_dataloader(), verbose=False)
        m = model.last_metrics
        return {
            "val_mIoU": float(m["val/mIoU"]),
            "mIoU": float(m["test/mIoU"]),
            "acc": float(m["test/acc"]),
            "steps": int(trainer.global_step),
        }

    # -- score -------------------------------------------------------------------------------
    def _score(self, parts: Parts) -> dict[str, Any]:
        p, n = self.p, len(parts.train)
        label_images(parts, np.arange(n))
        columns: dict[str, Any] = {"index": np.arange(n), "class": image_classes(parts)}
        rows = []
        for s in p.score_seeds:
            self.console.log(
                f"scoring run seed {s}: {n} images, {self.cfg.trainer.max_epochs} epochs"
            )
            dynamics = TrainingDynamics(n, parts.train)
            epochs = EpochScores(
                parts.train,
                n,
                list(p.el2n_epochs),
                list(p.grand_epochs),
                int(self.cfg.data.pool_batch_size),
                int(p.grand_chunk),
            )
            metrics = self.fit(parts, int(s), [dynamics, epochs])
            rows.append({"seed": int(s), **metrics})
            for name, v in {**dynamics.scores(int(p.window)), **epochs.scores()}.items():
                columns[f"{name}_seed{s}"] = v
        for name in SCORES:
            per_seed = [
                columns[f"{name}_seed{s}"] for s in p.score_seeds if f"{name}_seed{s}" in columns
            ]
            if per_seed:
                columns[name] = np.mean(per_seed, axis=0)
        scores = pd.DataFrame(columns)
        self._write("metrics.csv", csv_text(rows, list(rows[0])).encode())
        names = [c for c in SCORES if c in scores]
        self._record_scores(scores, names, "images")
        return {
            "stage": "score",
            "images": n,
            "scores": names,
            "mIoU": float(np.mean([r["mIoU"] for r in rows])),
            "acc": float(np.mean([r["acc"] for r in rows])),
        }

    # -- retrain -----------------------------------------------------------------------------
    def _retrain(self, parts: Parts) -> dict[str, Any]:
        p, n = self.p, len(parts.train)
        score, classes = self._load_scores(parts, n)
        kept = select(
            str(p.rule),
            float(p.keep),
            score,
            str(p.by),
            classes,
            float(p.offset),
            float(p.ccs_beta),
            int(p.ccs_strata),
            int(self.cfg.seed),
        )
        record = {"rule": p.rule, "by": p.by, "keep": float(p.keep), "kept": kept.tolist()}
        self._write("kept.json", (json.dumps(record) + "\n").encode())
        label_images(parts, kept)
        steps = self.full_steps(n)
        self.console.log(
            f"retrain on {len(kept)} of {n} images ({p.rule} by {p.by}, keep {p.keep:g}) "
            f"for {steps} iterations (the full run's)"
        )
        metrics = self.fit(parts, int(self.cfg.seed), [], max_steps=steps)
        row = {"keep": float(p.keep), "kept": len(kept), **metrics}
        self._write("metrics.csv", csv_text([row], list(row)).encode())
        self.console.log(
            f"[bold]test mIoU {metrics['mIoU']:.2f}  acc {metrics['acc']:.2f}[/]  "
            f"(val mIoU {metrics['val_mIoU']:.2f})"
        )
        return {"stage": "retrain", "rule": str(p.rule), "by": str(p.by), **row}

    def _load_scores(self, parts: Parts, n: int) -> tuple[np.ndarray | None, np.ndarray]:
        p = self.p
        if p.scores is None:
            if p.rule in ("random", "random_balanced"):
                return None, image_classes(parts)
            raise RunDirError(
                f"prune.rule={p.rule} needs prune.scores: the scores.parquet (or run dir) of "
                "`alseg prune score`"
            )
        path = Path(p.scores)
        if path.is_dir():
            path = path / "scores.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"prune.scores={p.scores}: no scores.parquet there")
        df = pd.read_parquet(path)
        if len(df) != n or not (np.sort(df["index"].to_numpy()) == np.arange(n)).all():
            raise ValueError(f"{path} scores {len(df)} images; this training set has {n}")
        df = df.sort_values("index")
        classes = df["class"].to_numpy()
        if p.rule in ("random", "random_balanced"):
            return None, classes
        if p.by not in df:
            valid = [c for c in SCORES if c in df]
            raise ValueError(
                f"prune.by={p.by!r} is not in {path}; scores there: {', '.join(valid)}"
            )
        return df[p.by].to_numpy(dtype=np.float64), classes
