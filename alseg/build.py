"""Build an experiment's objects from a (typed, checked) config: with ``alseg.parts`` the
one place that reads a config. One builder per part: data (``alseg.parts.build_parts``),
model (``model_spec``), trainer (``trainer_factory``), logger (``build_logger``), method
plug-ins (``build_extensions``), run dir (``open_run_dir``) and the round loop
(``build_loop``).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from alseg.acquisition.strategies import strategy_names
from alseg.config import changed_keys
from alseg.distributed import is_rank_zero
from alseg.extensions.base import Extension, ModelFactory, TrainerFactory
from alseg.extensions.continuous import ContinuousSchedule
from alseg.extensions.image_labels import ImageLabels, boundary_network
from alseg.extensions.label_matching import LabelMatching
from alseg.extensions.sieve import SieveConfig, Sieving
from alseg.extensions.stage2 import Stage2
from alseg.loop import ActiveLoop
from alseg.models.adaptation import AlignSpec
from alseg.models.factory import ModelSpec
from alseg.models.specs import OptimSpec, TagSpec
from alseg.parts import Parts, build_parts, check_budget, has_void_output, init_budget
from alseg.pretrain import check_pretrained, is_weights_path
from alseg.rundir import RunDir, RunDirError
from alseg.schema import RootConfig, settings
from alseg.schema.sections import ModelConfig, TrainerConfig
from alseg.state import Phase, RunState
from alseg.tasks import TASKS
from alseg.tracking import Tracker, user_console


def default_run_dir(cfg: DictConfig) -> Path:
    """runs/<task's folder>-seed<seed>-<stamp>; the stamp is the job id under SLURM or
    torchrun (the same in every process), else the time."""
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    stamp = f"job{job}" if job and job != "none" else time.strftime("%Y%m%d-%H%M%S")
    s = settings(cfg)
    return Path("runs") / f"{TASKS[s.task].folder(s)}-seed{s.seed}-{stamp}"


def quiet_lightning() -> None:
    """Keep the console for alseg's own progress: Lightning's info banners go."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*",
        ".*predict_dataloader.*",
        ".*`training_step` returned.*",
        # fit() runs without a val loader on purpose: evaluation is its own phase
        ".*defined a `validation_step` but have no `val_dataloader`.*",
        ".*isinstance\\(treespec, LeafSpec\\).*",  # Lightning vs torch
    ):
        warnings.filterwarnings("ignore", pattern)


# -- model, trainer, logger, extensions ----------------------------------------------------
def optim_spec(m: ModelConfig) -> OptimSpec:
    return OptimSpec(
        m.optimizer,
        m.lr,
        m.weight_decay,
        m.head_lr_mult,
        m.lr_schedule,
        m.poly_power,
        bool(m.nesterov),
    )


def model_spec(cfg: RootConfig, train: Any) -> ModelSpec:
    """Every model setting of the experiment (``alseg.schema.settings`` of a config)."""
    m, a = cfg.model, cfg.adaptation
    align = (
        AlignSpec(
            a.alignment,
            a.discriminate,
            tuple(a.disc_hidden),
            float(a.align_weight),
            float(a.grl_scale),
        )
        if a.enabled
        else None
    )
    return ModelSpec(
        arch=m.arch,
        encoder=m.encoder,
        encoder_weights=m.encoder_weights,
        num_classes=train.num_classes,
        class_names=tuple(train.class_names),
        optim=optim_spec(m),
        void_output=has_void_output(cfg.labeling),
        cosine=m.head == "cosine",
        head_temperature=m.head_temperature,
        stage2_lr=cfg.stage2.lr,
        multiclass=cfg.labeling.type == "multiclass",
        loss_weights=(m.loss_weights[0], m.loss_weights[1], m.loss_weights[2]),
        ignore_index=train.ignore_index,
        align=align,
        tags=TagSpec(
            cfg.weak.pooling,
            float(cfg.weak.lse_r),
            bool(cfg.weak.background),
            cfg.weak.tag_arch,
        )
        if cfg.labeling.type == "image"
        else None,
    )


def trainer_factory(t: TrainerConfig, logger: Any, root: Path) -> TrainerFactory:
    """Trainers of every fit and prediction pass of the experiment."""

    def make(
        callbacks: list[pl.Callback], max_steps: int | None = None, max_epochs: int | None = None
    ) -> pl.Trainer:
        extra: list[pl.Callback] = []
        if t.enable_progress_bar:
            from pytorch_lightning.callbacks import RichProgressBar

            extra.append(RichProgressBar(leave=False))
        return pl.Trainer(
            accelerator=t.accelerator,
            devices=t.devices,
            strategy=t.strategy,
            num_nodes=t.num_nodes,
            precision=t.precision,
            max_epochs=t.max_epochs if max_epochs is None else max_epochs,
            max_steps=t.max_steps if max_steps is None else max_steps,
            deterministic=t.deterministic,
            log_every_n_steps=t.log_every_n_steps,
            enable_progress_bar=t.enable_progress_bar,
            logger=logger if logger is not None else False,
            callbacks=extra + callbacks,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(root),
        )

    return make


def build_logger(cfg: DictConfig, rundir: RunDir, wandb_id: str | None = None) -> Any:
    """The experiment's WandbLogger (one W&B run over all rounds, resumed by id), or None.
    ``cfg`` whole: the W&B run records it."""
    s = settings(cfg)
    lg = s.logger
    if not lg.enabled or lg.mode == "disabled":
        return None
    from pytorch_lightning.loggers import WandbLogger

    os.environ.setdefault("WANDB_MODE", lg.mode)
    os.environ.setdefault("WANDB_SILENT", "true")
    what = TASKS[s.task].group(s)
    group = lg.group or "-".join([s.data.name, *what])
    logger = WandbLogger(
        project=lg.project,
        name=rundir.path.name,
        save_dir=str(rundir.path),
        offline=lg.mode == "offline",
        id=wandb_id,
        resume="allow",
        group=group,
        tags=list(lg.tags) + what,
        config=OmegaConf.to_container(cfg, resolve=True),
    )
    # Lightning always passes anonymous=None, and W&B warns that the setting "has no
    # effect" whatever its value: a warning nobody can act on
    getattr(logger, "_wandb_init", {}).pop("anonymous", None)
    return logger


def build_extensions(cfg: RootConfig) -> list[Extension]:
    """The method plug-ins the config asks for, in the order the loop calls them."""
    a = cfg.active
    keep = int(a.keep_checkpoints)
    out: list[Extension] = []
    if a.schedule == "continuous":
        out.append(
            ContinuousSchedule(
                cfg.trainer.max_steps,
                a.init_steps or 0,
                a.rounds,
                keep,
                a.final_steps or 0,
                a.lr_total_steps or 0,
            )
        )
    if cfg.stage2.enabled:
        out.append(Stage2(keep))
    if cfg.labeling.type == "image":
        m = cfg.model
        net = boundary_network(m.arch, m.encoder, m.encoder_weights)
        out.append(ImageLabels(cfg.weak, net, optim_spec(m), keep))
    if cfg.sieve.enabled:
        s = cfg.sieve
        out.append(
            Sieving(
                SieveConfig(
                    s.min_size, s.reference_area, s.min_pixels, s.step, s.scope, float(s.scale)
                )
            )
        )
    match = cfg.adaptation.match_labels
    lamda = "lamda" in strategy_names(a.strategy)
    if cfg.adaptation.enabled and (match if match is not None else lamda):
        out.append(LabelMatching())
    return out


# -- run dir and loop --------------------------------------------------------------------------
def open_run_dir(
    cfg: DictConfig, run_dir: Path, resume: bool, console: Console, writer: bool = True
) -> RunDir:
    """Take the run dir (rank 0: its lock), create it or check it for resuming, and
    return it with the state the loop continues from in ``rundir.state``. Not a
    ``writer`` (other DDP ranks, readers of a run): only check it, take no lock."""
    rundir = RunDir(run_dir)
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if not writer:  # other DDP ranks only read the run dir rank 0 prepared
        rundir.state = rundir.check() if resume else RunState()
        return rundir
    if resume:
        rundir.check()  # a folder that is no run dir is not created by taking its lock
    rundir.acquire_lock("resume" if resume else "run")
    try:
        if not resume:
            if rundir.create(config_yaml):
                console.log(f"{run_dir} never committed round 0: starting it afresh")
            # the run's identity: people's answers name it (alseg.human)
            rundir.state = RunState(config=config_yaml, run_id=uuid.uuid4().hex)
            return rundir
        state = rundir.check()
        for p in rundir.remove_temp_files():
            console.log(f"removed {p} (left by an interrupted write)")
        rundir.verify()
        _resume_config(settings(cfg).active.rounds, rundir, state, config_yaml)
        rundir.state = state
        return rundir
    except BaseException:
        rundir.release_lock()
        raise


def _resume_config(rounds: int, rundir: RunDir, state: RunState, config_yaml: str) -> None:
    """Record the (safe) keys ``alseg resume`` changed; refuse fewer rounds than the run has
    done (a finished run whose ``active.rounds`` grew is extended by the loop: ``_start``)."""
    r = state.round
    if r >= rounds:
        raise RunDirError(
            f"{rundir.state_path} is at round {r} but active.rounds={rounds}: "
            "a run cannot have fewer rounds than it has done"
        )
    labels = rundir.labels_path(r)
    waiting = state.phase == Phase.AWAITING_ANSWERS  # round r's answers may not exist yet
    if not labels.is_file() and not waiting:
        raise RunDirError(f"{labels} is missing: {rundir.state_path} says round {r} was labeled")
    old = state.config
    if old is not None and old != config_yaml:
        before = OmegaConf.to_container(OmegaConf.create(old))
        after = OmegaConf.to_container(OmegaConf.create(config_yaml))
        keys = changed_keys(before, after)  # type: ignore[arg-type]
        state.extra.setdefault("config_changes", []).append({"round": r, "keys": keys})
        state.config = config_yaml
        rundir.write_file(rundir.config_path, config_yaml.encode())
        rundir.write_state(state)  # processes that DDP launches later read the new config


def _checked_init_budget(cfg: RootConfig, parts: Parts) -> float:
    """The checks that refuse a run before its run dir is made; round 0's budget."""
    weights = cfg.model.encoder_weights
    if is_weights_path(weights):
        check_pretrained(weights, cfg.model.encoder, parts.train.fingerprint)
    pool_cost = float(parts.oracle.query_costs(np.arange(parts.store.num_regions)).sum())
    init = init_budget(cfg.active, pool_cost)
    check_budget(pool_cost, init, float(cfg.active.budget), int(cfg.active.rounds))
    return init


def build_loop(
    cfg: DictConfig,
    run_dir: Path,
    resume: bool,
    console: Console | None = None,
    progress: bool = True,
    read_only: bool = False,
) -> ActiveLoop:
    """Build the experiment; a new run dir is created only after every check passed.
    ``read_only``: an existing run's loop for analysis (its models, data and extensions;
    scripts, notebooks): no lock, no logger, nothing written, so it can read a run that an
    ``alseg resume`` is writing. Not for ``run()``."""
    quiet_lightning()
    parts = build_parts(cfg, progress)
    s = parts.settings
    init = _checked_init_budget(s, parts)
    console = console or user_console()
    rank_zero = is_rank_zero() and not read_only  # a reader writes nothing, as other ranks
    rundir = open_run_dir(cfg, run_dir, resume or read_only, console, rank_zero)
    if s.labeling.oracle == "human" and s.labeling.type == "pixel":
        from alseg.human.transfer import PaintedLabels

        parts.datamodule.labeled.mask_fn = PaintedLabels(rundir.path)  # what people painted
    try:
        logger = None if read_only else build_logger(cfg, rundir, rundir.state.wandb_id)
        tracker = Tracker(
            rundir,
            int(s.active.rounds),
            float(s.active.budget),
            logger,
            console if rank_zero else Console(quiet=True),
            rank_zero=rank_zero,
        )
        factory: ModelFactory = model_spec(s, parts.train).build
        return ActiveLoop(
            rundir=rundir,
            datamodule=parts.datamodule,
            oracle=parts.oracle,
            strategy=parts.strategy,
            model_factory=factory,
            trainer_factory=trainer_factory(s.trainer, logger, rundir.path),
            tracker=tracker,
            rounds=int(s.active.rounds),
            budget=float(s.active.budget),
            init_budget=init,
            reinit=bool(s.active.reinit),
            seed=int(s.seed),
            extensions=build_extensions(s),
            state=rundir.state,
            keep_checkpoints=int(s.active.keep_checkpoints),
            rank_zero=rank_zero,
            channels_last=bool(s.active.channels_last),
        )
    except BaseException:
        rundir.release_lock()
        raise
