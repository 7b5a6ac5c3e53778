"""The ``alseg`` command.

alseg run [key=value ...]       run an experiment composed from conf/ (+ overrides)
alseg resume RUN_DIR [key=value]  continue a killed run from its last committed phase
                                (keys that are safe to change, e.g. trainer.devices=4)
alseg regions [key=value ...]   precompute the region maps of the configured data set
alseg data check [key=value ...]  read every file of the data set; class frequencies
alseg pretrain [key=value ...]  self-supervised pre-training of the encoder on the pool
alseg prune score|retrain [key=value ...]  data pruning: score the labeled set / retrain
                                on a kept subset (keep=0.5 by=el2n rule=hardest scores=DIR)
alseg summarize RUN_DIR...      mean ± std learning-curve table over runs
alseg config [key=value ...]    print the composed config
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

OVERRIDE_HELP = (
    "key=value overrides of conf/config.yaml, e.g. seed=1 active.rounds=5 active.budget=100 "
    "active.strategy=classbal labeling=pixel data.num_train=200 data.image_size=64 "
    "trainer.max_epochs=10 trainer.accelerator=gpu trainer.devices=2 trainer.strategy=ddp"
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alseg", description="Label-efficient semantic segmentation.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an active-learning experiment")
    run.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    res = sub.add_parser("resume", help="continue a killed run from its run dir")
    res.add_argument("run_dir", type=Path)
    res.add_argument(
        "overrides",
        nargs="*",
        help="keys that are safe to change in a started run (where it runs, how many rounds), "
        "e.g. trainer.devices=4 active.rounds=8",
    )
    reg = sub.add_parser("regions", help="precompute region maps (cached on disk)")
    reg.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    data = sub.add_parser("data", help="data set tools")
    data.add_argument("action", choices=["check"], help="check: read every image and mask")
    data.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    prune = sub.add_parser("prune", help="data pruning: score, then retrain on a subset")
    prune.add_argument("stage", choices=["score", "retrain"])
    prune.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides; prune keys may drop their prefix: keep=0.5 by=el2n "
        "rule=hardest scores=runs/prune-score (see conf/config.yaml's prune section)",
    )
    pre = sub.add_parser(
        "pretrain",
        help="self-supervised pre-training of the encoder on the pool (model.encoder_weights=DIR)",
    )
    pre.add_argument(
        "overrides",
        nargs="*",
        help="key=value overrides, e.g. data=labelmefacade pretrain.method=densecl "
        "pretrain.epochs=50 (run_dir: default runs/pretrain/<method>-<encoder>-<pool>-<hash>)",
    )
    _analysis_parsers(sub)
    _people_parsers(sub)
    cfg = sub.add_parser("config", help="print the composed config")
    cfg.add_argument("overrides", nargs="*", help=OVERRIDE_HELP)
    return p


def _analysis_parsers(sub: Any) -> None:
    """``alseg summarize``, ``report``, ``sweep`` and ``bench``."""
    summ = sub.add_parser("summarize", help="mean ± std learning-curve table over run dirs")
    summ.add_argument("run_dirs", nargs="+", type=Path)
    summ.add_argument(
        "--metric",
        help="metrics.csv column (default mIoU; pruning: acc, mIoU or text's test_loss; "
        "also em_all, precision)",
    )
    rep = sub.add_parser("report", help="tidy table, curves and class heat map over run dirs")
    rep.add_argument("run_dirs", nargs="+", type=Path)
    rep.add_argument("--out", type=Path, required=True, help="output folder")
    rep.add_argument(
        "--metric",
        help="metrics.csv column (default mIoU; pruning: acc, mIoU or text's test_loss; "
        "also em_all, precision)",
    )
    rep.add_argument(
        "--baseline",
        default=None,
        metavar="SETTING",
        help="paired study: each setting's difference to this setting's run of the same seed, "
        "per round and over the area under the curve (summary.md, paired.md, paired.csv)",
    )
    rep.add_argument(
        "--full",
        nargs="+",
        type=Path,
        default=[],
        metavar="RUN_DIR",
        help="full-supervision reference runs (active.full_supervision=true): adds %% of full",
    )
    sw = sub.add_parser("sweep", help="run a W&B grid sweep file locally, one run after another")
    sw.add_argument("sweep_file", type=Path)
    sw.add_argument("--local", action="store_true", required=True, help="without W&B agents")
    sw.add_argument("--out", type=Path, default=None, help="results folder (runs/sweep-<name>)")
    sw.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    bench = sub.add_parser("bench", help="benchmarks: print measured figures as JSON lines")
    bench.add_argument(
        "name", choices=["acquisition", "adaptive", "committee", "pruning", "regions", "scoring"]
    )
    bench.add_argument("args", nargs=argparse.REMAINDER, help="options of the benchmark (--quick)")


def _people_parsers(sub: Any) -> None:
    """``alseg export`` and ``alseg import`` (labeling.oracle=human)."""
    exp = sub.add_parser(
        "export", help="a run waiting for answers: its queries as Label Studio tasks"
    )
    exp.add_argument("run_dir", type=Path)
    exp.add_argument("--out", type=Path, default=None, help="folder (RUN_DIR/export/round_XX)")
    exp.add_argument("--to", choices=["label-studio"], default=None, help="upload to a server")
    exp.add_argument("--url", default=None, help="the Label Studio server (with --to)")
    imp = sub.add_parser("import", help="people's answers (a Label Studio JSON export) into a run")
    imp.add_argument("run_dir", type=Path)
    imp.add_argument("answers", type=Path, nargs="?", help="Label Studio's JSON export")
    imp.add_argument(
        "--from",
        dest="source",
        choices=["label-studio"],
        default=None,
        help="download the export from the server the round was exported to",
    )
    imp.add_argument("--url", default=None, help="the server (default: the export's)")
    imp.add_argument("--project", type=int, default=None, help="its project id")


def _config(args: argparse.Namespace) -> int:
    from alseg.config import compose

    print(OmegaConf.to_yaml(compose(args.overrides)))
    return 0


def _regions(args: argparse.Namespace) -> int:
    from alseg.config import compose
    from alseg.data.regions import RegionStats
    from alseg.parts import build_datasets, build_regions
    from alseg.schema import settings

    cfg = compose(args.overrides)
    t0 = time.perf_counter()
    train = build_datasets(settings(cfg).data)[0]
    stats = RegionStats()
    regions = build_regions(settings(cfg).regions, train, stats=stats)
    dt = time.perf_counter() - t0
    speed = (
        f"computed {stats.computed} in {stats.seconds:.1f}s "
        f"({stats.images_per_s:.2f} images/s, {cfg.regions.num_workers} workers)"
        if stats.computed
        else "all from the cache"
    )
    print(
        f"{len(regions)} images, {regions.total} regions "
        f"({regions.num_regions.mean():.1f} per image); {speed}; {dt:.1f}s in all; "
        f"cache: {cfg.regions.cache_dir}"
    )
    return 0


def _data(args: argparse.Namespace) -> int:
    from alseg.config import compose
    from alseg.data.check import check_split, format_reports
    from alseg.parts import build_datasets
    from alseg.schema import settings

    sets = build_datasets(settings(compose(args.overrides)).data, strict=False)
    reports = [check_split(n, ds) for n, ds in zip(("train", "val", "test"), sets)]
    print(format_reports(reports, tuple(sets[0].class_names)))
    return 2 if any(r.errors for r in reports) else 0


def _run(args: argparse.Namespace) -> int:
    from alseg.build import default_run_dir
    from alseg.config import compose, load_run_config
    from alseg.distributed import is_rank_zero, shared_run_dir
    from alseg.tasks import TASKS

    if args.command == "resume":
        run_dir = args.run_dir
        cfg = load_run_config(run_dir, args.overrides)
    else:
        cfg = compose(args.overrides)
        run_dir = Path(cfg.run_dir or shared_run_dir() or default_run_dir(cfg))
    TASKS[cfg.task].run(cfg, run_dir, args.command == "resume")
    if is_rank_zero():
        print(f"run dir: {run_dir}")
    return 0


PRUNE_KEYS = ("keep", "by", "rule", "scores", "offset", "ccs_beta", "ccs_strata", "window")


def _prune(args: argparse.Namespace) -> int:
    """``alseg prune score|retrain``: ``alseg run task=prune prune.stage=...``."""
    overrides = [f"prune.{o}" if o.split("=", 1)[0] in PRUNE_KEYS else o for o in args.overrides]
    args.overrides = ["task=prune", f"prune.stage={args.stage}", *overrides]
    args.command = "run"
    return _run(args)


def _pretrain(args: argparse.Namespace) -> int:
    from alseg.config import compose
    from alseg.distributed import is_rank_zero
    from alseg.pretrain import run_pretrain

    cfg = compose(args.overrides)
    # every DDP rank derives the same default run dir (pool fingerprint, settings)
    path = run_pretrain(cfg, Path(cfg.run_dir) if cfg.run_dir else None)
    if is_rank_zero():
        print(f"model.encoder_weights={path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from importlib import import_module

    import_module(f"alseg.bench.{args.name}").main(args.args)
    return 0


def _split_tasks(run_dirs: list[Path]) -> dict[str, list[Path]]:
    """Run dirs by task: "active", "debias", "prune"."""
    from alseg.debias.report import is_debias_run
    from alseg.prune.report import is_prune_run

    out: dict[str, list[Path]] = {"active": [], "debias": [], "prune": []}
    for d in run_dirs:
        if not (Path(d) / "config.yaml").is_file():
            print(f"note: {d}: not a run dir (no config.yaml); skipped", file=sys.stderr)
            continue
        task = "debias" if is_debias_run(d) else "prune" if is_prune_run(d) else "active"
        out[task].append(d)
    return out


def _summarize(args: argparse.Namespace) -> int:
    from alseg.debias.report import load_results, results_table
    from alseg.prune.report import load_retrains, retrain_table
    from alseg.report import load_runs, markdown_table

    tasks = _split_tasks(args.run_dirs)
    tables, notes = [], []
    if tasks["debias"]:
        df, more = load_results(tasks["debias"])
        tables.append(results_table(df))
        notes += more
    if tasks["prune"]:
        df, more = load_retrains(tasks["prune"])
        tables.append(retrain_table(df, args.metric))
        notes += more
    if tasks["active"] or not tables:
        df, more = load_runs(tasks["active"])
        tables.append(markdown_table(df, args.metric or "mIoU"))
        notes += more
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print("\n\n".join(tables))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from alseg.sweep import run_local

    out = args.out or Path("runs") / f"sweep-{args.sweep_file.stem}"
    dirs = run_local(args.sweep_file, out, args.overrides)
    print(f"{len(dirs)} runs in {out}/; next: alseg report {out}/*/ --out {out}/report")
    return 0


def _report(args: argparse.Namespace) -> int:
    from alseg.debias.report import write_results_report
    from alseg.report import write_report

    tasks = _split_tasks(args.run_dirs)
    given = [t for t, dirs in tasks.items() if dirs]
    if len(given) > 1:
        raise ValueError(f"alseg report: give the runs of one task at a time (here: {given})")
    if (args.baseline or args.full) and given != ["active"]:
        raise ValueError(
            "alseg report: --baseline and --full compare active-learning runs (learning curves); "
            f"these are {given[0] if given else 'no'} runs"
        )
    if given == ["debias"]:
        for note in write_results_report(tasks["debias"], args.out):
            print(f"note: {note}", file=sys.stderr)
        print(f"report: {args.out}/ (runs.csv, runs.parquet, table.md)")
        return 0
    if given == ["prune"]:
        from alseg.prune.report import write_prune_report

        for note in write_prune_report(tasks["prune"], args.out, args.metric):
            print(f"note: {note}", file=sys.stderr)
        print(f"report: {args.out}/ (runs.csv, runs.parquet, table.md, pruning.png)")
        return 0
    metric = args.metric or "mIoU"
    notes = write_report(args.run_dirs, args.out, metric, args.baseline, args.full)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    summary = args.out / "summary.md"
    if args.baseline or args.full:
        print(summary.read_text())
    extra = ", summary.md" if args.baseline or args.full else ""
    extra += ", full.csv" if args.full else ""
    extra += ", paired.md, paired.csv" if args.baseline else ""
    print(f"report: {args.out}/ (runs.csv, runs.parquet, curves.png, classes.png, table.md{extra})")
    return 0


def _export(args: argparse.Namespace) -> int:
    from alseg.human.transfer import export_round, upload_round

    if args.to:
        if not args.url:
            raise ValueError("--to label-studio needs --url (e.g. http://localhost:8080)")
        project, n = upload_round(args.run_dir, args.url)
        print(
            f"{n} tasks in project {project} at {args.url}/projects/{project}; when answered: "
            f"alseg import {args.run_dir} --from label-studio && alseg resume {args.run_dir}"
        )
        return 0
    out, n = export_round(args.run_dir, args.out)
    print(
        f"{n} tasks: {out}/tasks.json, labelling config: {out}/label_config.xml\n"
        "In Label Studio: create a project with that labelling config, import tasks.json, "
        "answer, export the project as JSON, then: "
        f"alseg import {args.run_dir} EXPORT.json && alseg resume {args.run_dir}"
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from alseg.human.transfer import download_answers, import_answers, read_export

    if (args.answers is None) == (args.source is None):
        raise ValueError("give the answers: a JSON export file, or --from label-studio")
    export = (
        download_answers(args.run_dir, args.url, args.project)
        if args.source
        else read_export(args.answers)
    )
    report = import_answers(args.run_dir, export)
    for line in report.lines():
        print(line, file=sys.stderr if line.startswith(("error", "note")) else sys.stdout)
    if not report.pending:
        print(f"every query is answered: alseg resume {args.run_dir}")
    return 2 if report.parsed.problems else 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "export": _export,
    "import": _import,
    "config": _config,
    "regions": _regions,
    "data": _data,
    "run": _run,
    "resume": _run,
    "prune": _prune,
    "pretrain": _pretrain,
    "bench": _bench,
    "summarize": _summarize,
    "sweep": _sweep,
    "report": _report,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Heavy imports after argument parsing, so `alseg --help` is instant.
    from alseg.config import ConfigError
    from alseg.human.server import LabelStudioError
    from alseg.pretrain import PretrainError
    from alseg.rundir import RunDirError
    from alseg.sweep import SweepError

    try:
        return COMMANDS[args.command](args)
    except (
        ConfigError,
        RunDirError,
        SweepError,
        LabelStudioError,
        PretrainError,
        ValueError,
        FileNotFoundError,
    ) as e:
        print(f"alseg {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
