"""The frame of a pruning run (``alseg prune score|retrain``): the run dir (lock, config,
results.json, state "done"), the W&B run and the scores file; ``alseg.prune.run``
(images) and ``alseg.text.run`` (instruction data) fill in what is scored and retrained.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from alseg.build import build_logger, quiet_lightning
from alseg.distributed import is_rank_zero
from alseg.rundir import RunDir
from alseg.state import Phase, RunState
from alseg.tracking import user_console

T = TypeVar("T")  # what a run scores and retrains on: an experiment's parts, a text setup


class PruneRunBase(Generic[T]):
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
        parts = self.prepare()
        rd = self.rundir
        with rd.locked("run") if self.rank_zero else contextlib.nullcontext(rd):
            if self.rank_zero and rd.create(OmegaConf.to_yaml(self.cfg, resolve=True)):
                self.console.log(f"{rd.path} never finished: starting it afresh")
            self.logger = build_logger(self.cfg, rd) if self.rank_zero else None
            try:
                results = self._score(parts) if self.p.stage == "score" else self._retrain(parts)
            except BaseException:
                if self.logger is not None:
                    self.logger.experiment.finish(exit_code=1)
                raise
            self._write("results.json", (json.dumps(results, indent=2) + "\n").encode())
            if self.rank_zero:
                state = RunState(
                    round=0,
                    phase=Phase.DONE,
                    seed=int(self.cfg.seed),
                    task="prune",
                    config=OmegaConf.to_yaml(self.cfg, resolve=True),
                )
                rd.write_state(state)
            if self.logger is not None:
                self.logger.experiment.summary.update(
                    {f"final/{k}": v for k, v in results.items() if isinstance(v, float)}
                )
                self.logger.experiment.finish()
        return results

    def prepare(self) -> T:
        """What ``_score`` and ``_retrain`` work on (built before the run dir is made)."""
        raise NotImplementedError

    def _score(self, parts: T) -> dict[str, Any]:
        raise NotImplementedError

    def _retrain(self, parts: T) -> dict[str, Any]:
        raise NotImplementedError

    def _record_scores(self, scores: pd.DataFrame, names: list[str], what: str) -> None:
        """scores.parquet, a table of the ``names`` columns on the console, and their
        histograms in W&B."""
        buf = io.BytesIO()
        scores.to_parquet(buf, index=False)
        self.scores = scores
        self._write("scores.parquet", buf.getvalue())
        self._print_scores(scores, names, what)
        if self.logger is not None:
            import wandb

            finite = {k: scores[k].to_numpy(dtype=float) for k in names}
            self.logger.experiment.log(
                {f"prune/{k}": wandb.Histogram(v[np.isfinite(v)]) for k, v in finite.items()}
            )

    def _print_scores(self, scores: pd.DataFrame, names: list[str], what: str) -> None:
        title = f"scores of {len(scores)} {what} — {self.rundir.path}/scores.parquet"
        table = Table(title=title)
        forgetting = "forgetting" in names  # a column of its never-learned count
        for col in ["score", "mean", "std", "min", "max"] + ["never learned"] * forgetting:
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
            table.add_row(name, *stats, *[never] * forgetting)
        self.console.print(table)
