"""The hooks through which a method plugs into the round machine.

The loop (``alseg.loop.ActiveLoop``) runs the phases fit -> evaluate -> score -> select ->
annotate -> commit and calls every extension at fixed points:

* ``plan_fit(r, plan)`` before a fit: may change where training starts (weights, optimizer
  state, lr-schedule position, iterations);
* ``after_fit(r, fit)`` after the stage-1 fit: may train more and choose the model that is
  evaluated (``fit.eval_model``);
* ``evaluation_model(r)`` when a resumed run evaluates round r: the model it evaluates, if
  the extension owns it;
* ``after_select(r, ann, selection)`` once round r's answers are known, on every rank,
  before they are committed: files it writes are found by a resumed run;
* ``on_resume(r, phase)`` when a run resumes after round r's ``phase``: reload its state
  from the run dir;
* ``metrics_row(r)``: its columns of round r's row in metrics.csv.

State an extension needs after a restart is in the run dir; state a selection produces
travels in ``Selection.extras`` to every rank. The loop never tests for a particular
extension.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import pytorch_lightning as pl
import torch

from alseg.acquisition.base import Selection
from alseg.data.datamodule import ActiveDataModule
from alseg.data.labels import Annotations, LabelStore
from alseg.data.oracle import SimulatedOracle
from alseg.models.segmentation import SegmentationModule, TrainSpan
from alseg.rundir import RunDir
from alseg.tracking import Tracker


class TrainerFactory(Protocol):
    """Builds a Trainer with extra callbacks (None: the configured max_steps/max_epochs)."""

    def __call__(
        self,
        callbacks: list[pl.Callback],
        max_steps: int | None = None,
        max_epochs: int | None = None,
    ) -> pl.Trainer: ...


class ModelFactory(Protocol):
    """Builds a freshly initialised module of a stage (1: acquisition, 2: retrained)."""

    def __call__(self, stage: int, span: TrainSpan) -> SegmentationModule: ...


@dataclass
class FitPlan:
    """How one fit starts.

    Attributes:
        stage: 1 (the acquisition model) or 2 (retrained on pseudo labels).
        init: weights to start from (None: a fresh initialisation).
        span: position in a longer training run (continuous schedule).
        max_steps: iterations of this fit (None: the configured ``trainer.max_steps``).
        max_epochs: epochs of this fit (None: the configured ``trainer.max_epochs``).
    """

    stage: int = 1
    init: dict[str, torch.Tensor] | None = None
    span: TrainSpan = field(default_factory=TrainSpan)
    max_steps: int | None = None
    max_epochs: int | None = None


@dataclass
class FitResult:
    """A finished fit: the stage-1 model (acquisition), its trainer, and the model that is
    evaluated (the stage-1 model unless an extension trains another)."""

    model: SegmentationModule
    trainer: pl.Trainer
    eval_model: SegmentationModule


class RoundContext(Protocol):
    """What an extension reads and calls of the round machine (``alseg.loop.ActiveLoop``
    provides it): the run dir, the data and its label store, the annotator, the reporter,
    and the loop's way to train and to load a round's models."""

    rundir: RunDir
    dm: ActiveDataModule
    store: LabelStore
    oracle: SimulatedOracle
    tracker: Tracker
    trainer_factory: TrainerFactory
    rank_zero: bool
    seed: int

    def train(self, r: int, plan: FitPlan) -> tuple[SegmentationModule, pl.Trainer]:
        """Fit a model of round ``r`` as ``plan`` says; the model and its trainer."""
        ...

    def load_model(self, r: int, stage: int = 1) -> SegmentationModule:
        """The model of round ``r``'s fit of ``stage``, from its checkpoint."""
        ...

    def stage1_model(self, r: int) -> SegmentationModule:
        """The acquisition (stage-1) model of round ``r``."""
        ...

    def evaluation_model(self, r: int) -> SegmentationModule:
        """The model that round ``r`` evaluates."""
        ...


class Extension:
    """A method plug-in; every hook does nothing unless overridden."""

    name = "extension"

    def setup(self, loop: RoundContext) -> None:
        """Called once by the loop before it runs."""
        self.loop = loop

    def plan_fit(self, r: int, plan: FitPlan) -> FitPlan:
        return plan

    def after_fit(self, r: int, fit: FitResult) -> None:
        pass

    def evaluation_model(self, r: int) -> SegmentationModule | None:
        return None

    def after_select(self, r: int, ann: Annotations, selection: Selection) -> None:
        pass

    def on_resume(self, r: int, phase: str) -> None:
        pass

    def metrics_row(self, r: int) -> dict[str, float]:
        return {}
