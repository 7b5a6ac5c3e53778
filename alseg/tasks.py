"""The tasks a config runs (``task=``): how each names its run dir and its W&B group, and
how it runs. One registry stands where the CLI, the run-dir names and the logger branched
on the task; a new task is one entry here (and its checks in ``config.TASK_CHECKS``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from alseg.acquisition.strategies import strategy_names
from alseg.schema import TEXT_DATA, RootConfig


@dataclass(frozen=True)
class Task:
    name: str
    folder: Callable[[RootConfig], str]  # run-dir name before "-seed<seed>-<stamp>"
    group: Callable[[RootConfig], list[str]]  # W&B group parts after the data set's name
    run: Callable[[DictConfig, Path, bool], None]  # (config, run dir, resume)
    never_finished: Callable[[Path, str], str]  # (run dir, pruning stage) -> resume advice
    resumable: bool = True  # ``alseg resume`` continues its runs (pruning runs: never)


def schedule_name(cfg: RootConfig) -> str:
    """``active.strategy`` in a folder name or a W&B group: its names joined by '+'."""
    return "+".join(strategy_names(cfg.active.strategy))


def _active_folder(cfg: RootConfig) -> str:
    what = "full-supervision" if cfg.active.full_supervision else schedule_name(cfg)
    return f"{what}-{cfg.labeling.type}"


def _prune_folder(cfg: RootConfig) -> str:
    p = cfg.prune
    text = cfg.data.name in TEXT_DATA  # a text rule names its score: no ``by``
    rule = p.rule.replace("/", "-per-") if text else f"{p.rule}-{p.by}"
    what = "score" if p.stage == "score" else f"{rule}-keep{p.keep:g}"
    return f"prune-{what}-{cfg.data.name}"


def _active_group(cfg: RootConfig) -> list[str]:
    return [schedule_name(cfg), cfg.labeling.type]


def _prune_group(cfg: RootConfig) -> list[str]:
    if cfg.data.name not in TEXT_DATA:
        return _active_group(cfg)
    p = cfg.prune
    return ["score"] if p.stage == "score" else [p.rule, f"keep{p.keep:g}"]


def _run_active(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    from alseg.build import build_loop
    from alseg.distributed import RUN_DIR_VARIABLE, exported

    # Processes that Lightning launches later (DDP) rerun this command: same run dir.
    with exported(RUN_DIR_VARIABLE, str(run_dir.resolve())):
        build_loop(cfg, run_dir, resume=resume).run()


def _run_debias(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    from alseg.debias.run import run_debias

    run_debias(cfg, run_dir, resume=resume)


def _run_prune(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    from alseg.distributed import RUN_DIR_VARIABLE, exported
    from alseg.prune.run import PruneRun

    if resume:
        raise ValueError(
            f"{run_dir} is a finished pruning run (results.json); pruning runs are not "
            "resumed: to run it again, choose another run_dir (or delete this one)"
        )
    # Processes that Lightning launches later (DDP) rerun this command: same run dir.
    with exported(RUN_DIR_VARIABLE, str(run_dir.resolve())):
        if cfg.data.name in TEXT_DATA:
            from alseg.text.run import TextPruneRun

            TextPruneRun(cfg, run_dir).run()
        else:
            PruneRun(cfg, run_dir).run()


def _active_never_finished(run_dir: Path, stage: str) -> str:
    return (
        f"{run_dir} never committed its first round (the run stopped before round 0's "
        f"labels were saved): start it again with `alseg run ... run_dir={run_dir}` (the "
        "folder is reused)"
    )


def _never_finished(task: str, command: str) -> Callable[[Path, str], str]:
    """Advice for a run of a task that writes its state once, when it ends."""

    def advice(run_dir: Path, stage: str) -> str:
        return (
            f"{run_dir} never finished (a {task} run writes its state when it ends, and is "
            f"not resumed): start it again with `{command.format(stage=stage)} ... "
            f"run_dir={run_dir}` (the folder is reused)"
        )

    return advice


TASKS: dict[str, Task] = {
    "active": Task("active", _active_folder, _active_group, _run_active, _active_never_finished),
    "debias": Task(
        "debias",
        lambda c: f"{c.debias.method}-{c.data.name}",
        lambda c: [c.debias.method],
        _run_debias,
        _never_finished("debias", "alseg run"),
    ),
    "prune": Task(
        "prune",
        _prune_folder,
        _prune_group,
        _run_prune,
        _never_finished("prune", "alseg prune {stage}"),
        resumable=False,
    ),
}


def recorded_task(config_path: Path) -> tuple[Task, str]:
    """The task of a run dir's config.yaml and its pruning stage (``active`` where the
    file does not say, cannot be read, or names no known task)."""
    import yaml

    try:
        cfg = yaml.safe_load(config_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return TASKS["active"], ""
    task = TASKS.get(str(cfg.get("task", "active")), TASKS["active"])
    return task, str((cfg.get("prune") or {}).get("stage", "score"))
