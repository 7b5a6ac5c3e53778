"""Configuration: compose ``conf/`` (Hydra compose API) and build every object from it.

This is the one place that reads a config; constructors elsewhere take typed arguments.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from alseg.acquisition.sieve import SieveConfig
from alseg.acquisition.strategies import STRATEGIES, Strategy, get_strategy
from alseg.data.datamodule import ActiveDataModule
from alseg.data.imagefolder import build_imagefolder
from alseg.data.labels import LABEL_TYPES, LabelStore
from alseg.data.layouts import LAYOUTS, PAIRS, build_splits
from alseg.data.layouts import build_source as build_source_split
from alseg.data.oracle import ClickCost, SimulatedOracle
from alseg.data.regions import RegionSet, RegionStats, compute_regions
from alseg.data.shapes import SyntheticShapes
from alseg.data.synthetic import SyntheticScenes
from alseg.distributed import is_rank_zero
from alseg.loop import ActiveLoop, check_budget
from alseg.models.adaptation import ALIGNMENTS, DomainAdaptationModule
from alseg.models.heads import use_cosine_head
from alseg.models.segmentation import (
    LR_SCHEDULES,
    OPTIMIZERS,
    SegmentationModule,
    build_network,
)
from alseg.rundir import RunDir
from alseg.tracking import Tracker

DATASETS = ("synthetic", "shapes", "imagefolder_da", *LAYOUTS, *PAIRS)


FREE_FORM = ("active.strategy_params.",)  # keys without a fixed schema


class ConfigError(ValueError):
    """A config key or value is invalid; the message names it and the valid choices."""


def conf_dir() -> Path:
    """The ``conf/`` folder: $ALSEG_CONF, else the one beside the package (editable install)."""
    env = os.environ.get("ALSEG_CONF")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "conf"
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"no config.yaml in {path}; set ALSEG_CONF to alseg's conf/ folder")
    return path


def compose(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``key=value`` overrides and validate the result."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # Strategy parameters are free-form keyword arguments: add-or-override them (Hydra's ++).
    overrides = ["++" + o if o.startswith(FREE_FORM) and "=" in o else o for o in overrides]
    for o in overrides:
        if "=" not in o and not o.startswith("~"):  # ~key deletes a key (Hydra)
            raise ConfigError(f"override {o!r} must look like key=value (e.g. active.budget=200)")
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = hydra_compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).split("\nConfig search path")[0].strip()
        if "is not in struct" in msg or "Could not override" in msg:
            key = msg.split("'")[1] if "'" in msg else msg
            msg = f"unknown config key {key!r} (see `alseg run --help` or conf/)\n{msg}"
        raise ConfigError(msg) from None
    validate(cfg)
    return cfg


def _choice(value: Any, valid: tuple[str, ...] | list[str], key: str) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not valid; choose one of: {', '.join(valid)}")


def validate(cfg: DictConfig) -> None:
    """Check values that the config's structure cannot (choices, ranges)."""
    _choice(cfg.active.strategy, list(STRATEGIES), "active.strategy")
    _choice(cfg.labeling.type, LABEL_TYPES, "labeling.type")
    _choice(cfg.data.name, DATASETS, "data.name")
    _choice(cfg.regions.method, ("slic", "seeds", "grid"), "regions.method")
    _choice(cfg.logger.mode, ("offline", "online", "disabled"), "logger.mode")
    _choice(cfg.model.head, ("linear", "cosine"), "model.head")
    _choice(cfg.model.optimizer, OPTIMIZERS, "model.optimizer")
    dominant_only = [
        k
        for k, on in (
            ("active.strategy=adaptive_sizebal", cfg.active.strategy == "adaptive_sizebal"),
            ("sieve.enabled=true", bool(cfg.sieve.enabled)),
        )
        if on
    ]
    if dominant_only and cfg.labeling.type != "dominant":
        raise ConfigError(
            f"{' and '.join(dominant_only)} need dominant labels, not "
            f"labeling={cfg.labeling.type} (use labeling=dominant)"
        )
    if len(cfg.model.loss_weights) != 3:
        raise ConfigError(
            f"model.loss_weights={list(cfg.model.loss_weights)} needs 3 weights (CE, MP, PP)"
        )
    if cfg.active.rounds < 1:
        raise ConfigError(f"active.rounds={cfg.active.rounds} must be >= 1")
    if cfg.active.budget <= 0:
        raise ConfigError(f"active.budget={cfg.active.budget} must be > 0")
    adapt = bool(cfg.adaptation.enabled)
    if cfg.active.init_budget is not None and (
        cfg.active.init_budget < 0 or (cfg.active.init_budget == 0 and not adapt)
    ):
        raise ConfigError(
            f"active.init_budget={cfg.active.init_budget} must be > 0 or null "
            "(0 only with adaptation.enabled=true: a source-only round 0)"
        )
    _choice(cfg.adaptation.alignment, ALIGNMENTS, "adaptation.alignment")
    _choice(cfg.model.lr_schedule, LR_SCHEDULES, "model.lr_schedule")
    _choice(cfg.active.schedule, ("rounds", "continuous"), "active.schedule")
    if cfg.active.schedule == "continuous":
        if cfg.trainer.max_steps is None or cfg.trainer.max_steps <= 0:
            raise ConfigError(
                "active.schedule=continuous selects every trainer.max_steps iterations: "
                "set trainer.max_steps > 0"
            )
        if cfg.stage2.enabled:
            raise ConfigError("active.schedule=continuous cannot be combined with stage2")
    init_steps = cfg.active.get("init_steps")
    if init_steps is not None and (
        cfg.active.schedule != "continuous" or not isinstance(init_steps, int) or init_steps < 1
    ):
        raise ConfigError(
            f"active.init_steps={init_steps}: the iterations of round 0 of "
            "active.schedule=continuous, an integer >= 1, or null (= trainer.max_steps)"
        )
    _choice(cfg.adaptation.source_sampling, ("balanced", "uniform"), "adaptation.source_sampling")
    if adapt and cfg.labeling.type == "multiclass":
        raise ConfigError("adaptation.enabled=true trains with dominant or pixel labels only")
    synthetic = cfg.data.name in ("synthetic", "shapes")
    sizes = ("num_train", "num_val", "num_test", "image_size") if synthetic else ()
    for key in (*sizes, "batch_size", "pool_batch_size"):
        if cfg.data[key] < 1:
            raise ConfigError(f"data.{key}={cfg.data[key]} must be >= 1")
    for key, n in (("scale_range", 2), ("crop_size", 2)):
        value = cfg.data.get(key)
        if value is not None and (len(value) != n or min(value) <= 0):
            raise ConfigError(f"data.{key}={list(value)} must be null or {n} positive numbers")
    try:
        get_strategy(cfg.active.strategy, **cfg.active.strategy_params)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def default_run_dir(cfg: DictConfig) -> Path:
    """runs/<strategy>-<labeling>-seed<seed>-<stamp>; the stamp is the job id under SLURM or
    torchrun (the same in every process), else the time."""
    job = os.environ.get("SLURM_JOB_ID") or os.environ.get("TORCHELASTIC_RUN_ID")
    stamp = f"job{job}" if job and job != "none" else time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.active.strategy}-{cfg.labeling.type}-seed{cfg.seed}-{stamp}"


def quiet_lightning() -> None:
    """Keep the console for alseg's own progress: Lightning's info banners go."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*predict_dataloader.*")
    warnings.filterwarnings("ignore", ".*`training_step` returned.*")
    # fit() runs without a val loader on purpose: evaluation is its own phase
    warnings.filterwarnings(
        "ignore", ".*defined a `validation_step` but have no `val_dataloader`.*"
    )
    warnings.filterwarnings(
        "ignore", ".*isinstance\\(treespec, LeafSpec\\).*"
    )  # Lightning vs torch


@dataclass
class Parts:
    """Objects of an experiment that do not depend on the run dir."""

    train: Any  # data sets following the sample contract (SyntheticScenes, FileSegmentationDataset)
    val: Any
    test: Any
    regions: RegionSet
    store: LabelStore
    oracle: SimulatedOracle
    datamodule: ActiveDataModule
    strategy: Strategy


def _synthetic(d: DictConfig, split: str, n: int, domain: str) -> Any:
    if d.name == "shapes":
        imbalance, gap = float(d.imbalance), float(d.get("gap", 1.0))
        return SyntheticShapes(split, n, d.image_size, domain, d.seed, imbalance, gap)
    shift = float(d.label_shift) if domain == d.domain else 0.0
    return SyntheticScenes(split, n, d.image_size, domain, d.seed, shift)  # type: ignore[arg-type]


def build_datasets(d: DictConfig) -> tuple[Any, Any, Any]:
    """(pool, val, test) data sets of ``cfg.data``."""
    if d.name in ("synthetic", "shapes"):
        return tuple(
            _synthetic(d, split, n, d.domain)
            for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test))
        )
    if d.name == "imagefolder_da":
        return build_imagefolder(d)[:3]  # type: ignore[return-value]
    return build_splits(d)


def build_source(d: DictConfig) -> Any:
    """The labeled source domain of ``cfg.data`` (active domain adaptation)."""
    if d.name in ("synthetic", "shapes"):
        if d.domain == "source":
            raise ConfigError(
                "adaptation.enabled=true needs the target domain as the pool: data.domain=target"
            )
        return _synthetic(d, "train", int(d.num_source), "source")
    if d.name in PAIRS:
        return build_source_split(d)
    if d.name == "imagefolder_da":
        return build_imagefolder(d)[3]
    raise ConfigError(
        f"data={d.name} has no source domain; use data=synthetic, shapes or "
        f"{', '.join(PAIRS)} with adaptation.enabled=true"
    )


def region_params(r: DictConfig) -> dict[str, Any]:
    """Parameters of ``regions.method`` (they are part of the cache key)."""
    if r.method == "slic":
        return {"n_segments": r.n_segments, "compactness": r.compactness}
    if r.method == "seeds":
        return {"n_segments": r.n_segments, **OmegaConf.to_container(r.seeds)}  # type: ignore[dict-item]
    return {"cell": r.cell}


def build_regions(
    cfg: DictConfig, train: Any, progress: bool = True, stats: RegionStats | None = None
) -> RegionSet:
    r = cfg.regions
    return compute_regions(
        train.image_uint8,
        len(train),
        r.method,
        region_params(r),
        train.fingerprint,
        r.cache_dir,
        r.num_workers,
        progress,
        max_memory_mb=float(r.get("max_memory_mb", 1024)),
        stats=stats,
    )


def build_parts(cfg: DictConfig, progress: bool = True) -> Parts:
    d = cfg.data
    train, val, test = build_datasets(d)
    regions = build_regions(cfg, train, progress)
    store = LabelStore(regions.total, train.num_classes)
    oracle = SimulatedOracle(
        train.mask,
        regions,
        train.num_classes,
        cfg.labeling.type,
        ClickCost(cfg.labeling.cost_per_region),
        train.ignore_index,
        void_bit=bool(cfg.labeling.void_bit),
        trim_kernel=int(cfg.labeling.trim_kernel),
    )
    dm = ActiveDataModule(
        train,
        val,
        test,
        regions,
        store,
        train.mask,
        batch_size=d.batch_size,
        pool_batch_size=d.pool_batch_size,
        num_workers=d.num_workers,
        ignore_index=train.ignore_index,
        hflip=d.hflip,
        scale_range=tuple(d.scale_range) if d.get("scale_range") else None,
        crop_size=tuple(d.crop_size) if d.get("crop_size") else None,
        source_set=build_source(d) if cfg.adaptation.enabled else None,
        unlabeled_target=cfg.adaptation.enabled and cfg.adaptation.alignment != "none",
    )
    if cfg.adaptation.enabled and cfg.adaptation.source_sampling == "balanced":
        dm.set_source_prior(None, balanced=True)
    params = dict(cfg.active.strategy_params)
    if cfg.active.strategy == "pixbal" and has_void_output(cfg):
        params.setdefault("void_class", train.num_classes)  # void-majority regions score 0
    strategy = get_strategy(cfg.active.strategy, **params)
    return Parts(train, val, test, regions, store, oracle, dm, strategy)


def has_void_output(cfg: DictConfig) -> bool:
    """Multi-class labels with a void bit: the model predicts C + 1 outputs."""
    return cfg.labeling.type == "multiclass" and bool(cfg.labeling.void_bit)


def init_budget(cfg: DictConfig) -> float:
    return float(
        cfg.active.init_budget if cfg.active.init_budget is not None else cfg.active.budget
    )


def build_loop(
    cfg: DictConfig,
    run_dir: Path,
    resume: bool,
    console: Console | None = None,
    progress: bool = True,
) -> ActiveLoop:
    """Build the experiment; for a new run, create the run dir (after every check passed)."""
    quiet_lightning()
    parts = build_parts(cfg, progress)
    pool_cost = float(parts.oracle.query_costs(np.arange(parts.store.num_regions)).sum())
    check_budget(pool_cost, init_budget(cfg), float(cfg.active.budget), int(cfg.active.rounds))

    rundir = RunDir(run_dir)
    rank_zero = is_rank_zero()
    state: dict[str, Any] = {}
    if resume:
        state = rundir.check()
    elif rank_zero:
        rundir.create(OmegaConf.to_yaml(cfg, resolve=True))

    wandb_logger = None
    if cfg.logger.enabled and cfg.logger.mode != "disabled":
        from pytorch_lightning.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", cfg.logger.mode)
        os.environ.setdefault("WANDB_SILENT", "true")
        group = cfg.logger.group or f"{cfg.data.name}-{cfg.active.strategy}-{cfg.labeling.type}"
        wandb_logger = WandbLogger(
            project=cfg.logger.project,
            name=rundir.path.name,
            save_dir=str(rundir.path),
            offline=cfg.logger.mode == "offline",
            id=state.get("wandb_id"),
            resume="allow",
            group=group,
            tags=list(cfg.logger.tags) + [cfg.active.strategy, cfg.labeling.type],
            config=OmegaConf.to_container(cfg, resolve=True),
        )
    if not rank_zero:
        console = Console(quiet=True)
    tracker = Tracker(
        rundir,
        int(cfg.active.rounds),
        float(cfg.active.budget),
        wandb_logger,
        console,
        rank_zero=rank_zero,
    )

    t = cfg.trainer
    m = cfg.model
    train = parts.train

    void = has_void_output(cfg)

    def model_factory(stage: int = 1) -> SegmentationModule:
        cosine = m.head == "cosine"
        C = train.num_classes + int(void)
        network = build_network(m.arch, m.encoder, m.encoder_weights, C, cosine)
        if cosine and m.arch != "Classifier":  # the classifier builds its own cosine head
            use_cosine_head(network, m.head_temperature)
        lr = cfg.stage2.lr if stage == 2 and cfg.stage2.lr is not None else m.lr
        a = cfg.adaptation
        module: Any = SegmentationModule
        extra: dict[str, Any] = {}
        if a.enabled:
            module = DomainAdaptationModule
            extra = dict(
                alignment=a.alignment,
                discriminate=a.discriminate,
                disc_hidden=tuple(a.disc_hidden),
                align_weight=a.align_weight,
                grl_scale=a.grl_scale,
            )
        return module(
            network,
            train.num_classes,
            train.class_names,
            lr,
            m.weight_decay,
            m.poly_power,
            train.ignore_index,
            void_output=void,
            loss_weights=tuple(m.loss_weights),
            optimizer=m.optimizer,
            head_lr_mult=m.head_lr_mult,
            lr_schedule=m.lr_schedule,
            nesterov=bool(m.nesterov),
            **extra,
        )

    def trainer_factory(callbacks: list[pl.Callback], max_steps: int | None = None) -> pl.Trainer:
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
            # continuous: the loop passes each round's iterations (init_steps for round 0)
            max_epochs=-1 if cfg.active.schedule == "continuous" else t.max_epochs,
            max_steps=t.max_steps if max_steps is None else max_steps,
            deterministic=t.deterministic,
            log_every_n_steps=t.log_every_n_steps,
            enable_progress_bar=t.enable_progress_bar,
            logger=wandb_logger if wandb_logger is not None else False,
            callbacks=extra + callbacks,
            enable_checkpointing=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            default_root_dir=str(rundir.path),
        )

    return ActiveLoop(
        rundir=rundir,
        datamodule=parts.datamodule,
        oracle=parts.oracle,
        strategy=parts.strategy,
        model_factory=model_factory,
        trainer_factory=trainer_factory,
        rounds=int(cfg.active.rounds),
        budget=float(cfg.active.budget),
        init_budget=init_budget(cfg),
        reinit=bool(cfg.active.reinit),
        seed=int(cfg.seed),
        tracker=tracker,
        keep_checkpoints=int(cfg.active.keep_checkpoints),
        rank_zero=rank_zero,
        stage2=bool(cfg.stage2.enabled),
        channels_last=bool(cfg.active.channels_last),
        steps_per_round=int(t.max_steps) if cfg.active.schedule == "continuous" else 0,
        init_steps=int(cfg.active.get("init_steps") or 0),
        sieve=(
            SieveConfig(
                int(cfg.sieve.min_size),
                int(cfg.sieve.reference_area),
                int(cfg.sieve.min_pixels),
                int(cfg.sieve.step),
            )
            if cfg.sieve.enabled
            else None
        ),
    )


def load_run_config(run_dir: Path) -> DictConfig:
    """The resolved config saved in a run dir (what ``alseg resume`` runs with)."""
    rundir = RunDir(run_dir)
    rundir.check()
    try:
        cfg = OmegaConf.load(rundir.config_path)
    except Exception as e:
        raise ConfigError(f"{rundir.config_path} is corrupt ({e})") from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{rundir.config_path} is not a mapping")
    validate(cfg)
    return cfg
