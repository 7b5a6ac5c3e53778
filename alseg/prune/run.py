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

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from alseg.atomic import csv_text
from alseg.build import (
    Parts,
    build_logger,
    build_parts,
    model_spec,
    quiet_lightning,
    trainer_factory,
)
from alseg.distributed import is_rank_zero
from alseg.prune.callbacks import EpochScores, TrainingDynamics
from alseg.prune.scores import SCORES
from alseg.prune.select import select
from alseg.rundir import RunDir, RunDirError
from alseg.state import Phase
from alseg.tracking import user_console


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


class PruneRun:
    """Args:
    cfg: the typed config (``task=prune``).
    run_dir: the run directory.
    console: rich console.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, console: Console | None = None) -> None:
        self.cfg, self.p = cfg, cfg.prune
        self.rank_zero = is_rank_zero()
        self.console = (console or user_console()) if self.rank_zero else Console(quiet=True)
        self.rundir = RunDir(run_dir)

    def _write(self, name: str, data: bytes) -> None:
        """A committed file of the run dir (rank 0 only)."""
        if self.rank_zero:
            self.rundir.write_file(self.rundir.path / name, data)

    def run(self) -> dict[str, Any]:
        """Score or retrain. Under DDP every rank trains and records; rank 0 alone holds
        the run dir's lock and writes its files."""
        quiet_lightning()
        parts = build_parts(self.cfg, progress=bool(self.cfg.trainer.enable_progress_bar))
        rd = self.rundir
        with rd.locked("run") if self.rank_zero else contextlib.nullcontext(rd):
            if self.rank_zero and rd.create(OmegaConf.to_yaml(self.cfg, resolve=True)):
                self.console.log(f"{rd.path} never finished: starting it afresh")
            self.logger = build_logger(self.cfg, rd, {}) if self.rank_zero else None
            try:
                results = self._score(parts) if self.p.stage == "score" else self._retrain(parts)
            except BaseException:
                if self.logger is not None:
                    self.logger.experiment.finish(exit_code=1)
                raise
            self._write("results.json", (json.dumps(results, indent=2) + "\n").encode())
            if self.rank_zero:
                state = {
                    "round": 0,
                    "phase": Phase.DONE,
                    "seed": int(self.cfg.seed),
                    "task": "prune",
                    "config": OmegaConf.to_yaml(self.cfg, resolve=True),
                }
                rd.write_state(state)
            if self.logger is not None:
                self.logger.experiment.summary.update(
                    {f"final/{k}": v for k, v in results.items() if isinstance(v, float)}
                )
                self.logger.experiment.finish()
        return results

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
        buf = io.BytesIO()
        scores.to_parquet(buf, index=False)
        self.scores = scores
        self._write("scores.parquet", buf.getvalue())
        self._write("metrics.csv", csv_text(rows, list(rows[0])).encode())
        names = [c for c in SCORES if c in scores]
        self._print_scores(scores, names)
        if self.logger is not None:
            import wandb

            finite = {k: scores[k].to_numpy(dtype=float) for k in names}
            self.logger.experiment.log(
                {f"prune/{k}": wandb.Histogram(v[np.isfinite(v)]) for k, v in finite.items()}
            )
        return {
            "stage": "score",
            "images": n,
            "scores": names,
            "mIoU": float(np.mean([r["mIoU"] for r in rows])),
            "acc": float(np.mean([r["acc"] for r in rows])),
        }

    def _print_scores(self, scores: pd.DataFrame, names: list[str]) -> None:
        table = Table(title=f"scores of {len(scores)} images — {self.rundir.path}/scores.parquet")
        for col in ("score", "mean", "std", "min", "max", "never learned"):
            table.add_column(col, justify="right")
        for name in names:
            v = scores[name].to_numpy(dtype=float)
            fin = v[np.isfinite(v)]
            stats = (
                [f"{f(fin):.4g}" for f in (np.mean, np.std, np.min, np.max)]
                if len(fin)
                else ["-"] * 4
            )
            never = str(int((~np.isfinite(v)).sum())) if name == "forgetting" else ""
            table.add_row(name, *stats, never)
        self.console.print(table)

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


def run_prune(cfg: DictConfig, run_dir: Path, console: Console | None = None) -> dict[str, Any]:
    return PruneRun(cfg, run_dir, console).run()
