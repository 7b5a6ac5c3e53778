"""Configuration: compose ``conf/`` (Hydra compose API), type and check it.

``compose`` returns a typed config (``alseg.schema``) in which every value has been
checked, before anything is written; ``load_run_config`` reads a run dir's config for
``alseg resume`` and refuses one that changed since the run started, except the keys that
are safe to change (``SAFE_TO_CHANGE``), given explicitly. Objects are built from a
config in ``alseg.build``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from alseg.acquisition.strategies import STRATEGIES, build_schedule, strategy_names
from alseg.models.segmentation import ARCHITECTURES
from alseg.rundir import RunDir
from alseg.schema import DEBIAS_DATA, TEXT_DATA, SchemaError, check
from alseg.schema.sections import IMAGE_RULES, TEXT_RULES

FREE_FORM = ("active.strategy_params.",)  # keys without a fixed schema
# Batch norm after global pooling (ASPP, PAN's attention, the classifier's bottleneck)
# cannot train on one image per batch.
BATCH_NORM_POOLING = ("DeepLabV3Plus", "DeepLabV3", "PAN", "Classifier")
# Keys a running experiment may change on resume (`alseg resume RUN key=value`): where and
# how it runs, not what it computes.
SAFE_TO_CHANGE = (
    "trainer.accelerator",
    "trainer.devices",
    "trainer.strategy",
    "trainer.num_nodes",
    "trainer.precision",
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
    "data.root",
    "data.source_root",
    "data.num_workers",
    "data.pool_batch_size",
    "regions.num_workers",
    "regions.cache_dir",
    "regions.max_memory_mb",
    "logger.mode",
    "logger.tags",
    "active.rounds",
    "active.keep_checkpoints",
    "active.channels_last",
)


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
    """Compose ``conf/config.yaml`` with ``key=value`` overrides; the typed, checked config."""
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
    return typed(cfg)


def typed(cfg: DictConfig) -> DictConfig:
    """``cfg`` typed by the schema and checked (ranges, choices, combinations)."""
    valid = {"strategies": list(STRATEGIES), "architectures": [*ARCHITECTURES, "Classifier"]}
    try:
        out = check(cfg, valid)
    except SchemaError as e:
        raise ConfigError(str(e)) from None
    if out.active.full_supervision:  # what a full-supervision reference is
        out.labeling.type, out.active.rounds = "pixel", 1
    validate(out)
    return out


def validate(cfg: DictConfig) -> None:
    """Check what the schema cannot: combinations of values (those of the task's own)."""
    if cfg.data.name in TEXT_DATA and cfg.task != "prune":
        raise ConfigError(
            f"data={cfg.data.name} (instruction data) runs task=prune only: `alseg prune "
            "score|retrain experiment=prune_text`"
        )
    if (cfg.task in BIAS_TASKS) != (cfg.data.name in DEBIAS_DATA):
        raise ConfigError(
            f"task={cfg.task} cannot run data={cfg.data.name}: task=debias needs a data set "
            f"with a bias attribute ({', '.join(DEBIAS_DATA)}), task=active any other "
            "(e.g. alseg run experiment=lwbc_colored_shapes)"
        )
    for check_task in TASK_CHECKS[cfg.task]:
        check_task(cfg)


def _validate_active(cfg: DictConfig) -> None:
    """A round run's combinations: labels, schedule, questions, adaptation, batch size."""
    names = strategy_names(cfg.active.strategy)
    dominant_only = [
        k
        for k, on in (
            ("active.strategy=adaptive_sizebal", "adaptive_sizebal" in names),
            ("sieve.enabled=true", bool(cfg.sieve.enabled)),
        )
        if on
    ]
    if dominant_only and cfg.labeling.type != "dominant":
        raise ConfigError(
            f"{' and '.join(dominant_only)} need dominant labels, not "
            f"labeling={cfg.labeling.type} (use labeling=dominant)"
        )
    adapt = bool(cfg.adaptation.enabled)
    if cfg.active.full_supervision:
        _validate_full(cfg)
    if cfg.active.init_budget == 0 and not adapt:
        raise ConfigError(
            f"active.init_budget={cfg.active.init_budget:g} must be > 0 or null "
            "(0 only with adaptation.enabled=true: a source-only round 0)"
        )
    _validate_schedule(cfg)
    _validate_questions(cfg, adapt)
    if adapt and cfg.labeling.type in ("multiclass", "image"):
        raise ConfigError("adaptation.enabled=true trains with dominant or pixel labels only")
    if cfg.adaptation.match_labels and not adapt:
        raise ConfigError(
            "adaptation.match_labels=true re-samples the source domain: set adaptation.enabled=true"
        )
    if cfg.data.batch_size < 2 and cfg.model.arch in BATCH_NORM_POOLING:
        raise ConfigError(
            f"data.batch_size={cfg.data.batch_size} cannot train model.arch={cfg.model.arch}: "
            "its batch norm after global pooling needs at least 2 images per batch (per "
            "device); use data.batch_size >= 2"
        )
    try:
        schedule = build_schedule(
            cfg.active.strategy,
            dict(OmegaConf.to_container(cfg.active.strategy_params)),  # type: ignore[arg-type]
        )
    except ValueError as e:
        raise ConfigError(str(e)) from None
    pretrained = [s.name for s in schedule.steps if getattr(s, "fresh_model", False)]
    if pretrained and not cfg.model.encoder_weights:
        raise ConfigError(
            f"{pretrained[0]} embeds regions with a pre-trained encoder (embedding=pretrained), "
            "but model.encoder_weights is null: pre-train one (`alseg pretrain`, then "
            "model.encoder_weights=<its run dir>) or set active.strategy_params.embedding=model"
        )


def _validate_prune(cfg: DictConfig) -> None:
    """Every score the scoring run is asked for can be computed in it, and a retrain's
    scores exist, before a run dir is made."""
    p, epochs = cfg.prune, int(cfg.trainer.max_epochs)
    text = cfg.data.name in TEXT_DATA
    if p.stage == "retrain":
        rules = TEXT_RULES if text else IMAGE_RULES
        if p.rule not in rules:
            what = "instruction data" if text else f"data={cfg.data.name} (images)"
            raise ConfigError(
                f"prune.rule={p.rule} is not a rule of {what}; choose one of: {', '.join(rules)}"
            )
        if text and p.scores is None:
            raise ConfigError(
                "a retrain on instruction data needs prune.scores: the run dir of `alseg prune "
                "score` of the same seed and data (its kept set is chosen from those scores)"
            )
        _check_scores_path(p.scores)
    if text:
        if cfg.trainer.strategy not in ("auto", "ddp"):
            raise ConfigError(
                f"trainer.strategy={cfg.trainer.strategy} cannot fine-tune instruction data yet: "
                "the scoring passes need the whole model on every rank; use auto or ddp"
            )
        return
    if cfg.labeling.type != "pixel":
        raise ConfigError(
            f"task=prune trains on fully labeled images: labeling={cfg.labeling.type} must be "
            "labeling=pixel"
        )
    if p.stage == "score":
        if not p.score_seeds:
            raise ConfigError(
                "prune.score_seeds=[] scores with no model; give at least one seed, e.g. "
                "prune.score_seeds=[0,1,2]"
            )
        if epochs >= 0:  # -1: a step-limited run, whose epochs are not known here
            for key in ("el2n_epochs", "grand_epochs"):
                late = [e for e in p[key] if e > epochs]
                if late:
                    raise ConfigError(
                        f"prune.{key}={list(p[key])} asks for scores after epoch(s) {late}, but "
                        f"the scoring runs train trainer.max_epochs={epochs} epochs; use epochs "
                        f"0..{epochs} or more epochs"
                    )
            if p.window + 1 > epochs:
                raise ConfigError(
                    f"prune.window={p.window} (dynamic uncertainty over windows of that many "
                    f"epochs, the last epoch's window left out) needs trainer.max_epochs >= "
                    f"{p.window + 1}, not {epochs}"
                )
    _validate_active(cfg)  # a pruning run of images trains rounds' models


def _check_scores_path(scores: str | None) -> None:
    if scores is not None:
        path = Path(str(scores))
        found = path / "scores.parquet" if path.is_dir() else path
        if not found.is_file():
            raise ConfigError(
                f"prune.scores={scores}: no scores.parquet there (give the file, or the run "
                "dir of `alseg prune score`)"
            )


BIAS_TASKS = ("debias",)  # tasks that read a data set with a bias attribute
# The combination checks of each task (alseg.tasks.TASKS holds how it runs).
TASK_CHECKS: dict[str, tuple[Callable[[DictConfig], None], ...]] = {
    "active": (_validate_active,),
    "debias": (),
    "prune": (_validate_prune,),  # images: the round checks too (_validate_active)
}


def _validate_full(cfg: DictConfig) -> None:
    """A full-supervision reference trains a plain model on every pool pixel, nothing else."""
    extra = [
        k
        for k, on in (
            ("stage2.enabled=true", bool(cfg.stage2.enabled)),
            ("adaptation.enabled=true", bool(cfg.adaptation.enabled)),
            ("active.schedule=continuous", cfg.active.schedule == "continuous"),
            ("labeling.oracle=human", cfg.labeling.oracle == "human"),
            ("regions.method=image", cfg.regions.method == "image"),
        )
        if on
    ]
    if extra:
        raise ConfigError(
            f"active.full_supervision=true labels every pool pixel in one round and cannot run "
            f"{', '.join(extra)}; run the reference without it"
        )


def _validate_schedule(cfg: DictConfig) -> None:
    """The keys of the continuous schedule belong to it, and it to them."""
    if cfg.active.schedule == "continuous":
        if cfg.trainer.max_steps <= 0:
            raise ConfigError(
                "active.schedule=continuous selects every trainer.max_steps iterations: "
                f"trainer.max_steps={cfg.trainer.max_steps}; set trainer.max_steps > 0"
            )
        if cfg.stage2.enabled:
            raise ConfigError("active.schedule=continuous cannot be combined with stage2")
    else:
        for key in ("init_steps", "final_steps", "lr_total_steps"):
            if cfg.active[key] is not None:
                raise ConfigError(
                    f"active.{key}={cfg.active[key]} belongs to active.schedule=continuous "
                    "(the iterations of round 0 / of the last round / of the lr schedule); "
                    f"set active.schedule=continuous or active.{key}=null"
                )


def _validate_questions(cfg: DictConfig, adapt: bool) -> None:
    """Who answers (people: what they cannot answer yet) and image-level questions."""
    if cfg.labeling.oracle == "human":
        simulated_only = [
            k
            for k, on in (
                ("active.schedule=continuous", cfg.active.schedule == "continuous"),
                ("adaptation.enabled=true", adapt),
                ("sieve.enabled=true", bool(cfg.sieve.enabled)),
                (
                    "active.strategy=adaptive_sizebal",
                    "adaptive_sizebal" in strategy_names(cfg.active.strategy),
                ),
            )
            if on
        ]
        if simulated_only:
            raise ConfigError(
                f"labeling.oracle=human cannot run {', '.join(simulated_only)} yet "
                "(selections inside a training run and merged regions are simulated only); "
                "use labeling.oracle=simulated"
            )
    image = cfg.labeling.type == "image"
    if image != (cfg.regions.method == "image"):
        raise ConfigError(
            f"labeling={cfg.labeling.type} with regions.method={cfg.regions.method}: image-level "
            "labels (labeling=image) ask about whole images, so they go with "
            "regions.method=image (one region per image), and only they do"
        )
    if image and (cfg.labeling.void_bit or cfg.stage2.enabled or cfg.sieve.enabled):
        raise ConfigError(
            "labeling=image trains its own pseudo labels (weak.*): set labeling.void_bit=false, "
            "stage2.enabled=false and sieve.enabled=false"
        )
    if image and cfg.weak.get("background") and not cfg.weak.pseudo_labels:
        raise ConfigError(
            "weak.background=true with weak.pseudo_labels=false: the tag model has no map of "
            "the background class to evaluate; keep weak.pseudo_labels=true"
        )


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(
            flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v}
        )
    return out


def changed_keys(before: dict[Any, Any], after: dict[Any, Any]) -> list[str]:
    """Dotted keys whose values differ between two config containers."""
    a, b = flatten(before), flatten(after)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>"))


def _safe(key: str) -> bool:
    return key in SAFE_TO_CHANGE


def load_run_config(run_dir: Path, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The config ``alseg resume`` runs with: the run dir's config.yaml, unchanged since
    the run started, with ``overrides`` of keys that are safe to change.

    Raises:
        ConfigError: config.yaml was edited, or an override changes what the run computes.
    """
    rundir = RunDir(run_dir)
    state = rundir.check()
    try:
        loaded = OmegaConf.load(rundir.config_path)
    except Exception as e:
        raise ConfigError(f"{rundir.config_path} is corrupt ({e})") from e
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{rundir.config_path} is not a mapping")
    current = OmegaConf.to_container(loaded, resolve=True)
    started_yaml = state.config  # the YAML text the run started with
    if isinstance(started_yaml, str) and isinstance(current, dict):
        started = OmegaConf.to_container(OmegaConf.create(started_yaml))
        assert isinstance(started, dict)
        edited = changed_keys(started, current)
        if edited:
            raise ConfigError(
                f"{rundir.config_path} differs from the config the run started with "
                f"({', '.join(edited[:6])}); restore it (the original is in "
                f"{rundir.state_path} under 'config'). To change a key that is safe to "
                f"change, give it to resume: alseg resume {run_dir} KEY=VALUE "
                f"(safe: {', '.join(SAFE_TO_CHANGE)})"
            )
    for o in overrides:
        key = o.split("=", 1)[0]
        if "=" not in o:
            raise ConfigError(f"override {o!r} must look like key=value")
        if not _safe(key):
            raise ConfigError(
                f"{key} cannot change in a started run (it changes what the run computes); "
                f"safe to change: {', '.join(SAFE_TO_CHANGE)}"
            )
    loaded = with_new_sections(loaded)
    cfg = OmegaConf.merge(loaded, OmegaConf.from_dotlist(list(overrides))) if overrides else loaded
    assert isinstance(cfg, DictConfig)
    return typed(cfg)


def with_new_sections(saved: DictConfig) -> DictConfig:
    """A run's saved config with the top-level sections that alseg gained after the run
    started (``weak``, ``prune``, ...) filled with today's defaults: they did not exist, so
    the run did not use them, and an older run dir still resumes."""
    defaults = compose([])
    missing = [k for k in defaults if k not in saved]
    if not missing:
        return saved
    merged = OmegaConf.merge({k: defaults[k] for k in missing}, saved)
    assert isinstance(merged, DictConfig)
    return merged
