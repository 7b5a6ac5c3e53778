"""A debiasing run: features, the method's fits, selection on val, one test, the weights.

Run dir (the same locking and checksums as an active-learning run, ``alseg.rundir``)::

    config.yaml, state.json      (round 0, phase "done" once the run finished)
    metrics.csv                  one row per epoch of every fit (val group accuracies, losses)
    results.json                 the selected epoch, val and test summaries, the test matrix
    weights.parquet              index, weight, agreement, label, bias of every training sample
    checkpoints/main.pt          the selected main classifier
    checkpoints/committee.pt     LWBC: the committee at the same epoch (its own file)
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch.utils.data import DataLoader, Subset, TensorDataset

from alseg.atomic import csv_text
from alseg.debias.data import GroupDataset, aligned_bias
from alseg.debias.features import cached_features
from alseg.debias.layouts import build_group_datasets
from alseg.debias.losses import bootstrap_masks
from alseg.debias.modules import (
    ERM,
    LWBC,
    CommitteeSpec,
    DebiasModule,
    GroupDRO,
    HeadSpec,
    LfF,
)
from alseg.debias.ssl import SSLSpec
from alseg.debias.tracking import DebiasTracker
from alseg.rundir import RunDir
from alseg.schema import settings
from alseg.state import Phase, RunState
from alseg.tracking import user_console

METHODS = ("erm", "jtt", "lff", "lwbc", "groupdro")


@dataclass
class Fitted:
    """A method's selected model and what the run saves of it."""

    module: DebiasModule
    name: str  # the fit the module comes from (JTT: the chosen grid point)
    weights: torch.Tensor | None = None  # per-sample weights when the method fixes them
    choice: dict[str, Any] | None = None


class FeatureData:
    """Cached features and labels of the three splits, and the loaders over them."""

    def __init__(self, feats: dict[str, torch.Tensor], sets: tuple[GroupDataset, ...]) -> None:
        self.tensors = {
            s.split: TensorDataset(
                feats[s.split],
                torch.as_tensor(s.labels),
                torch.as_tensor(s.biases),
                torch.arange(len(s)),
            )
            for s in sets
        }

    def train_loader(
        self, batch_size: int, seed: int, copies: torch.Tensor | None = None
    ) -> DataLoader:
        """Shuffled training batches; with ``copies`` (N,) ints, an epoch over the set in
        which sample i appears copies[i] times (JTT's up-sampled set), without replacement."""
        ds = self.tensors["train"]
        g = torch.Generator().manual_seed(seed)
        if copies is not None:
            index = torch.repeat_interleave(torch.arange(len(ds)), copies.long())
            ds = Subset(ds, index.tolist())  # type: ignore[assignment]
        return DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g)

    def eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self.tensors[split], batch_size=4096, shuffle=False)

    def split(self, name: str) -> tuple[torch.Tensor, ...]:
        return self.tensors[name].tensors


class DebiasRun:
    """Args:
    cfg: the typed config (``task=debias``).
    run_dir: the run directory.
    console: rich console.
    """

    def __init__(self, cfg: DictConfig, run_dir: Path, console: Console | None = None) -> None:
        self.cfg, self.d = cfg, cfg.debias
        self.console = console or user_console()
        self.rundir = RunDir(run_dir)

    # -- trainers ----------------------------------------------------------------------------
    def trainer(self, max_epochs: int, progress: bool | None = None) -> pl.Trainer:
        t = self.cfg.trainer
        show = t.enable_progress_bar if progress is None else progress
        callbacks: list[pl.Callback] = []
        if show:
            from pytorch_lightning.callbacks import RichProgressBar

            callbacks.append(RichProgressBar(leave=False))
        return pl.Trainer(
            accelerator=t.accelerator,
            devices=1,  # heads on cached features: seconds per epoch on one device
            precision=t.precision,
            max_epochs=max_epochs,
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=show,
            num_sanity_val_steps=0,
            deterministic=t.deterministic,
            default_root_dir=str(self.rundir.path),
        )

    # -- the run -------------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict[str, Any]:
        from alseg.build import build_logger, quiet_lightning

        quiet_lightning()
        sets = build_group_datasets(settings(self.cfg).data)
        rd = self.rundir
        with rd.locked("resume" if resume else "run"):
            if resume:
                state = rd.check()
                if state.phase == Phase.DONE:
                    self.console.log(f"{rd.path} is finished; nothing to resume")
                    return json.loads((rd.path / "results.json").read_text())
            if rd.create(OmegaConf.to_yaml(self.cfg, resolve=True)):
                self.console.log(f"{rd.path} never finished: starting it afresh")
            logger = build_logger(self.cfg, rd)
            tracker = DebiasTracker(self.console, logger)
            try:
                results = self._run(sets, tracker)
            except BaseException:
                tracker.abort()
                raise
        return results

    def _run(
        self, sets: tuple[GroupDataset, GroupDataset, GroupDataset], tracker: DebiasTracker
    ) -> dict[str, Any]:
        cfg, d = self.cfg, self.d
        s = d.ssl
        ssl = SSLSpec(
            int(s.epochs), int(s.batch_size), float(s.lr), float(s.temperature), int(s.seed)
        )
        feats, cache = cached_features(
            d.features,
            ssl,
            sets,
            int(cfg.data.image_size),
            lambda max_epochs: self.trainer(max_epochs),
            self.console.log,
        )
        data = FeatureData(feats, sets)
        train = sets[0]
        counts = train.group_counts()
        self.console.log(
            f"{cfg.data.name}: {len(train)} training samples, "
            f"{100.0 * _conflicting_share(counts):.2f}% bias-conflicting; method {d.method}"
        )
        spec = HeadSpec(
            in_dim=int(feats["train"].shape[1]),
            hidden=d.hidden,
            num_classes=train.num_classes,
            num_biases=train.num_biases,
            bias=bool(d.bias),
            temperature=float(d.temperature),
            optimizer=str(d.optimizer),
            lr=float(d.lr),
            weight_decay=float(d.weight_decay),
        )
        history: list[dict[str, Any]] = []
        fitted = self._fit(data, spec, aligned_bias(counts), tracker, history)
        return self._finish(fitted, data, sets, counts, history, cache, tracker)

    def _fit(
        self,
        data: FeatureData,
        spec: HeadSpec,
        aligned: np.ndarray,
        tracker: DebiasTracker,
        history: list[dict[str, Any]],
    ) -> Fitted:
        d, seed = self.d, int(self.cfg.seed)
        epochs = int(d.epochs)

        def hook(fit: str, n: int) -> Callable[[dict[str, Any]], None]:
            def log(row: dict[str, Any]) -> None:
                history.append({"fit": fit, **row})
                tracker.epoch(fit, row, n)

            return log

        def fit(
            module: DebiasModule, name: str, n: int, copies: torch.Tensor | None = None
        ) -> DebiasModule:
            module.on_epoch = hook(name, n)
            self.trainer(n).fit(
                module,
                data.train_loader(int(d.batch_size), seed, copies),
                data.eval_loader("val"),
            )
            return module

        pl.seed_everything(seed, workers=True, verbose=False)
        if d.method == "jtt":
            return self._jtt(data, spec, aligned, fit)
        module = self._module(data, spec, aligned)
        return Fitted(fit(module, str(d.method), epochs), str(d.method))

    def _module(self, data: FeatureData, spec: HeadSpec, aligned: np.ndarray) -> DebiasModule:
        """The LightningModule of ``debias.method`` (all but JTT, which trains twice)."""
        d, select = self.d, str(self.d.select)
        y = data.split("train")[1]
        if d.method == "groupdro":
            return GroupDRO(spec, aligned, select, step_size=float(d.groupdro.step_size))
        if d.method == "lff":
            return LfF(spec, aligned, select, labels=y, q=float(d.lff.q), ema=float(d.lff.ema))
        if d.method == "lwbc":
            c = d.lwbc
            committee = CommitteeSpec(
                int(c.members),
                int(c.set_size),
                float(c.alpha),
                float(c.loss_scale),
                float(c.kd_lambda),
                float(c.kd_temperature),
                int(c.warmup),
            )
            g = torch.Generator().manual_seed(int(self.cfg.seed))
            masks = bootstrap_masks(len(y), spec.num_classes, committee.members, c.set_size, g)
            return LWBC(spec, aligned, select, committee=committee, in_bag=masks)
        return ERM(spec, aligned, select)

    def _jtt(
        self,
        data: FeatureData,
        spec: HeadSpec,
        aligned: np.ndarray,
        fit: Callable[..., DebiasModule],
    ) -> Fitted:
        """JTT: for each identification length T, the errors of an ERM model after T epochs
        are up-sampled in a second ERM run; the grid point whose selected epoch is best on
        val wins (the paper tunes T and lambda_up on val worst-group).

        Up-sampling as the official code: the error set is appended lambda_up times, so an
        error appears 1 + lambda_up times, and an epoch runs over the enlarged set without
        replacement (``jtt_copies``)."""
        d, seed = self.d, int(self.cfg.seed)
        x, y = data.split("train")[:2]
        best: Fitted | None = None
        for T in d.jtt.identify_epochs:
            pl.seed_everything(seed, workers=True, verbose=False)
            first = fit(
                ERM(spec, aligned, "last"),
                f"jtt_identify_T{T}",
                int(T),
            )
            errors = (first.predict_main(x) != y).numpy()
            for up in d.jtt.upweight:
                weights = torch.from_numpy(jtt_copies(errors, up)).float()  # copies per sample
                pl.seed_everything(seed, workers=True, verbose=False)
                name = f"jtt_T{T}_up{up:g}"
                module = fit(ERM(spec, aligned, str(d.select)), name, int(d.epochs), weights)
                choice = {
                    "identify_epochs": int(T),
                    "upweight": float(up),
                    "errors": int(errors.sum()),
                }
                score = module.best["score"][0]  # type: ignore[index]
                self.console.log(
                    f"{name}: {int(errors.sum())} errors, best val_{d.select} {score:.2f}"
                )
                if best is None or module.best["score"] > best.module.best["score"]:  # type: ignore[index]
                    best = Fitted(module, name, weights, choice)
        assert best is not None
        return best

    # -- outputs -------------------------------------------------------------------------------
    def _finish(
        self,
        fitted: Fitted,
        data: FeatureData,
        sets: tuple[GroupDataset, ...],
        counts: np.ndarray,
        history: list[dict[str, Any]],
        cache: Path,
        tracker: DebiasTracker,
    ) -> dict[str, Any]:
        module = fitted.module
        assert module.best is not None
        module.load_best()
        train = sets[0]
        summaries, matrix = {}, None
        for split in ("val", "test"):
            x, y, b, _ = data.split(split)
            ga = module.group_accuracy(module.predict_main(x), y, b)
            summaries[split] = ga.summary()
            matrix = ga.matrix if split == "test" else matrix
        x, y, b, idx = data.split("train")
        w = module.sample_weights(x.to(module.device), y.to(module.device), b.to(module.device))
        weight = fitted.weights if fitted.weights is not None else w["weight"]
        weights = pd.DataFrame(
            {
                "index": idx.numpy(),
                "weight": weight.numpy().astype(np.float64),
                "agreement": w["agreement"].numpy().astype(np.float64),
                "label": y.numpy(),
                "bias": b.numpy(),
            }
        )
        results = {
            "method": str(self.d.method),
            "criterion": str(self.d.select),
            "selected": {
                "fit": fitted.name,
                "epoch": int(module.best["epoch"]),
                **(fitted.choice or {}),
            },
            "val": summaries["val"],
            "test": summaries["test"],
            "test_matrix": np.asarray(matrix).tolist(),
            "class_names": list(train.class_names),
            "bias_names": list(train.bias_names),
            "aligned_bias": aligned_bias(counts).tolist(),
            "train_group_counts": counts.tolist(),
            "features": str(cache),
        }
        self._write(results, weights, history, module)
        tracker.finish(results, weights, train, int(self.d.top_samples))
        return results

    def _write(
        self,
        results: dict[str, Any],
        weights: pd.DataFrame,
        history: list[dict[str, Any]],
        module: DebiasModule,
    ) -> None:
        rd = self.rundir
        fields = list(dict.fromkeys(k for row in history for k in row))
        rd.write_file(rd.metrics_path, csv_text(history, fields).encode())
        buf = io.BytesIO()
        weights.to_parquet(buf, index=False)
        rd.write_file(rd.path / "weights.parquet", buf.getvalue())
        state = {k: v for k, v in module.best["state"].items()}  # type: ignore[index]
        main = {k[len("main.") :]: v for k, v in state.items() if k.startswith("main.")}
        rd.write_file(rd.path / "checkpoints" / "main.pt", _torch_bytes(main))
        committee = {k: v for k, v in state.items() if k.startswith(("committee.", "in_bag"))}
        if committee:
            rd.write_file(rd.path / "checkpoints" / "committee.pt", _torch_bytes(committee))
        rd.write_file(rd.path / "results.json", (json.dumps(results, indent=2) + "\n").encode())
        rd.write_state(
            RunState(
                round=0,
                phase=Phase.DONE,
                seed=int(self.cfg.seed),
                task="debias",
                config=OmegaConf.to_yaml(self.cfg, resolve=True),
            )
        )


def jtt_copies(errors: np.ndarray, upweight: float) -> np.ndarray:
    """(N,) copies of each training sample in JTT's second run: 1 + lambda_up for an
    error, 1 otherwise (anniesch/jtt, run_expt.py: Subset(train, errors * up_weight))."""
    if float(upweight) != int(upweight) or upweight < 1:
        raise ValueError(
            f"debias.jtt.upweight={upweight:g} must be a whole number >= 1 (an error set "
            "is appended that many times)"
        )
    return np.where(np.asarray(errors, dtype=bool), 1 + int(upweight), 1).astype(np.int64)


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _conflicting_share(counts: np.ndarray) -> float:
    aligned = counts[np.arange(len(counts)), aligned_bias(counts)].sum()
    return float(1.0 - aligned / max(counts.sum(), 1))


def run_debias(
    cfg: DictConfig, run_dir: Path, resume: bool = False, console: Console | None = None
) -> dict[str, Any]:
    """Run the debiasing experiment of ``cfg`` in ``run_dir`` (``resume``: a finished run
    is shown; one that never finished is started again with ``alseg run``)."""
    return DebiasRun(cfg, run_dir, console).run(resume)
