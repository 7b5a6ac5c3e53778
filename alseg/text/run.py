"""``alseg prune score|retrain`` on instruction data (``experiment=prune_text``; the llm
extra): the frame of a pruning run (run dir, lock, W&B, results.json, state)
(``alseg.prune.protocol``) with the text protocol of ``alseg.text.filtering`` inside.

``alseg prune score``: the data, tokenizer and initial model of the run's seed (the data's
seed: ``data.seed``, null = the run's), every rule's score of every training example ->
``scores.parquet`` (``index``, ``class`` = the skill, ``skill``, ``defect``, ``example`` =
a hash of the instruction and response, and a column per score). ``alseg prune retrain
prune.scores=DIR prune.rule=ifd prune.keep=0.3``: the same seed's data and initial model
(checked against the scores' ``example`` hashes), the kept examples fine-tuned for
``text.steps`` steps, evaluated on the clean test set; ``kept.json``, ``metrics.csv`` (one
row: kept, removal precision and recall per defect, test loss, exact match per skill).
Under DDP (``trainer.devices=2 trainer.strategy=ddp``) the fits are data-parallel and the
scoring passes are shared out over the ranks and gathered, so every rank holds the same
scores (tests/test_ddp_strategies.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from alseg.config import ConfigError
from alseg.prune.protocol import PruneRunBase
from alseg.rundir import RunDirError
from alseg.schema import RootConfig, settings
from alseg.text.filtering import Setup, TextStudy, keep, removal_quality, retrain, scores, setup
from alseg.text.instructions import DEFECTS, Example
from alseg.text.lm import require_llm
from alseg.text.rules import SCORE_COLUMNS


def study_of(cfg: RootConfig) -> TextStudy:
    """The protocol's settings from a run's typed config: the ``text`` section (its keys
    are ``TextStudy``'s), the data's sizes and defect rates, the trainer's device keys."""
    d, tr = cfg.data, cfg.trainer
    return TextStudy(
        **{**dataclasses.asdict(cfg.text), "lora_targets": tuple(cfg.text.lora_targets)},
        n=d.n,
        rates={k: float(getattr(d.rates, k)) for k in DEFECTS},
        trusted=d.trusted,
        target=d.target,
        test=d.test,
        accelerator=tr.accelerator,
        devices=tr.devices,
        strategy=tr.strategy,
        precision=str(tr.precision),
        progress=tr.enable_progress_bar,
    )


def example_hash(e: Example) -> str:
    """A short digest of an example's instruction and response (which data were scored)."""
    return hashlib.sha1(f"{e.instruction}\0{e.response}".encode()).hexdigest()[:16]


class TextPruneRun(PruneRunBase[Setup]):
    """A pruning run on instruction data (module docstring)."""

    def prepare(self) -> Setup:
        cfg = settings(self.cfg)
        try:  # before anything is built or written
            require_llm("peft", *(("datasets",) if cfg.data.source is not None else ()))
        except ImportError as e:
            raise ConfigError(str(e)) from None
        self.study = study_of(cfg)
        examples = None
        if cfg.data.source is not None:
            from alseg.text.hf_data import Fields, load_instructions

            f = cfg.data.fields
            loaded = load_instructions(
                cfg.data.source,
                Fields(f.instruction, f.input, f.response, f.skill),
                cfg.data.split,
                cfg.data.on_empty,
                cfg.data.limit,
            )
            examples = loaded.examples
            if loaded.dropped_empty:
                self.console.log(
                    f"{cfg.data.source}: {len(loaded.dropped_empty)} records with an empty "
                    f"response dropped (rows {loaded.dropped_empty[:10]}"
                    f"{' ...' if len(loaded.dropped_empty) > 10 else ''})"
                )
        s = setup(self.study, cfg.seed, cfg.data.seed, examples)
        if self.p.stage == "retrain":  # before the run dir is made: scores of other data
            self.kept_from = self._text_scores(s)
        return s

    def _score(self, s: Setup) -> dict[str, Any]:
        n = len(s.train)
        self.console.log(
            f"scoring {n} examples ({len(s.trusted)} trusted, {len(s.target)} target, "
            f"{len(s.test)} test): reference model, early model, LESS"
        )
        t0 = time.perf_counter()
        df = scores(s, self.study, int(self.cfg.seed))
        df.insert(0, "index", np.arange(n))
        df.insert(1, "class", df["skill"])
        df.insert(4, "example", [example_hash(e) for e in s.train])
        defects = df["defect"].value_counts().to_dict()
        row = {"examples": n, "seconds": round(time.perf_counter() - t0, 1)}
        self._write("metrics.csv", _csv([row]))
        self._record_scores(df, list(SCORE_COLUMNS), "examples")
        return {"stage": "score", "examples": n, "scores": list(SCORE_COLUMNS), "defects": defects}

    def _retrain(self, s: Setup) -> dict[str, Any]:
        p = self.p
        df = self.kept_from
        kept = keep(df, str(p.rule), float(p.keep))
        record = {"rule": p.rule, "keep": float(p.keep), "kept": kept.tolist()}
        self._write("kept.json", (json.dumps(record) + "\n").encode())
        self.console.log(
            f"fine-tune on {len(kept)} of {len(df)} examples ({p.rule}, keep {p.keep:g}) for "
            f"{self.study.steps} steps"
        )
        row = {"keep": float(p.keep), "kept": len(kept), **removal_quality(df, kept)}
        row |= retrain(s, self.study, kept, int(self.cfg.seed))
        self._write("metrics.csv", _csv([row]))
        self.console.log(
            f"[bold]test loss {row['test_loss']:.3f}  exact match {row['em_all']:.1f} %[/]  "
            f"(removals {row['precision']:.1f} % defective)"
        )
        return {"stage": "retrain", "rule": str(p.rule), **row}

    def _text_scores(self, s: Setup) -> pd.DataFrame:
        """The scores.parquet of ``prune.scores``, checked to score this run's data."""
        path = Path(str(self.p.scores))
        path = path / "scores.parquet" if path.is_dir() else path
        df = pd.read_parquet(path).sort_values("index").reset_index(drop=True)
        ours = [example_hash(e) for e in s.train]
        if "example" not in df:
            raise RunDirError(f"{path} holds no text scores (no 'example' column)")
        differ = len(ours) if len(df) != len(ours) else int((df["example"] != ours).sum())
        if differ:
            raise RunDirError(
                f"{path} scores other data than this run's ({len(df)} examples there, "
                f"{len(ours)} here, {differ} differ): retrain with the scoring run's seed and "
                "data settings (seed, data.seed, data.n, data.rates, data.source ...)"
            )
        return df


def _csv(rows: list[dict[str, Any]]) -> bytes:
    from alseg.atomic import csv_text

    return csv_text(rows, list(rows[0])).encode()
