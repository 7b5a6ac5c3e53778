"""The active-learning round machine: plain Python around Lightning, resumable by phase.

A round r is: fit on the labels committed so far -> evaluate (val + test) -> score the
pool -> select -> annotate -> commit the labels of round r + 1. Round 0's labels are a
random set under the same click budget. After each phase the run dir records it, so a
killed run resumes at the next phase with nothing lost and nothing paid twice:

    labeled(r) --fit--> fitted(r) --evaluate--> evaluated(r) --select--> labeled(r+1)

Methods that need more than a strategy (stage-2 pseudo labels, sieving, label-distribution
matching, selections during one training run) are ``Extension``s called at fixed points of
this machine (``alseg.extensions``); the loop never tests for a particular method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.acquisition.base import PoolStats, Selection
from alseg.acquisition.decide import decide
from alseg.acquisition.passes import score_pool
from alseg.acquisition.strategies import Schedule
from alseg.data.datamodule import ActiveDataModule
from alseg.data.labels import Annotations
from alseg.data.oracle import SimulatedOracle
from alseg.distributed import adopt_rank_zero_state
from alseg.extensions.base import Extension, FitPlan, FitResult, ModelFactory, TrainerFactory
from alseg.human.queries import QueryRound, load_queries, save_queries
from alseg.models.segmentation import SegmentationModule, TrainSpan
from alseg.plots import plot_curve
from alseg.rundir import RunDir
from alseg.state import Phase, RunState
from alseg.tracking import Tracker, round_row


class ActiveLoop:
    """Runs (or resumes) one active-learning experiment in a run dir.

    Args:
        rundir: where state is read and written.
        datamodule: pool, val, test, region maps and the LabelStore.
        oracle: answers queries.
        strategy: the strategy of each selection (``Schedule``: round 0's set by
            ``at(0)``, random unless a schedule says otherwise).
        model_factory: ``(stage, span) ->`` a freshly initialised module.
        trainer_factory: builds a Trainer with extra callbacks.
        tracker: W&B / console reporting.
        rounds: number of trained-and-evaluated rounds (rows of metrics.csv).
        budget: clicks per round; ``init_budget`` for round 0 (random).
        reinit: re-initialise the model each round (else warm-start from the last).
        seed: experiment seed (round r trains with seed * 1000 + r).
        extensions: method plug-ins, called in this order.
        state: the run's state (state.json when resuming; the entries a new run starts
            with otherwise).
        keep_checkpoints: model checkpoints kept (last rounds).
        rank_zero: whether this process writes the run dir (DDP rank 0).
        channels_last: score the pool with NHWC tensors.
    """

    def __init__(
        self,
        rundir: RunDir,
        datamodule: ActiveDataModule,
        oracle: SimulatedOracle,
        strategy: Schedule,
        model_factory: ModelFactory,
        trainer_factory: TrainerFactory,
        tracker: Tracker,
        rounds: int,
        budget: float,
        init_budget: float,
        reinit: bool = True,
        seed: int = 0,
        extensions: Sequence[Extension] = (),
        state: RunState | None = None,
        keep_checkpoints: int = 2,
        rank_zero: bool = True,
        channels_last: bool = False,
    ) -> None:
        self.rundir, self.dm, self.oracle, self.schedule = rundir, datamodule, oracle, strategy
        self.store = datamodule.store
        self.model_factory, self.trainer_factory = model_factory, trainer_factory
        self.tracker = tracker
        self.rounds, self.budget, self.init_budget = rounds, budget, init_budget
        self.reinit, self.seed = reinit, seed
        self.state = state if state is not None else RunState()
        self.keep_checkpoints = keep_checkpoints
        # Under DDP every rank runs this loop and applies the same label updates; only rank
        # 0 writes the run dir.
        self.rank_zero, self.channels_last = rank_zero, channels_last
        self.region_sizes = datamodule.regions.region_sizes()
        self.model: SegmentationModule | None = None  # stage 1 (acquisition)
        self.eval_model: SegmentationModule | None = None  # evaluated
        self.extensions = list(extensions)
        for ext in self.extensions:
            ext.setup(self)

    # -- state and models -----------------------------------------------------------------
    def _state_at(self, r: int, phase: Phase) -> RunState:
        """The run's state after round ``r``'s ``phase``."""
        s = self.state
        s.round, s.phase, s.seed, s.spent = r, phase, self.seed, self.store.spent()
        s.wandb_id = self.tracker.wandb_id or s.wandb_id
        return s

    def _commit_state(self, r: int, phase: Phase) -> None:
        if self.rank_zero:
            self.rundir.write_state(self._state_at(r, phase))

    def _generator(self, r: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + r)

    def load_model(self, r: int, stage: int = 1) -> SegmentationModule:
        """The model of round ``r``'s fit of ``stage``, from its checkpoint."""
        model = self.model_factory(stage, TrainSpan())
        model.load_state_dict(self.rundir.load_checkpoint(r, stage), strict=False)
        return model

    def stage1_model(self, r: int) -> SegmentationModule:
        """The acquisition (stage-1) model of round ``r``."""
        if self.model is None:  # resumed after the fit: load its weights
            self.model = self.load_model(r)
        return self.model

    # -- phases ---------------------------------------------------------------------------
    def commit(self, r: int, ann: Annotations) -> None:
        """Record the answers of round ``r``: selections CSV, labels file, then state."""
        self.store.add(ann, r)
        rows = ann.records(self.dm.regions, self.dm.class_names)
        if self.rank_zero:
            state = self._state_at(r, Phase.LABELED)
            self.rundir.commit_round(r, rows, self.store.to_bytes(), state)
        self.dm.refresh()
        self.tracker.log_selection(r, ann, rows, self.dm)

    def train(self, r: int, plan: FitPlan) -> tuple[SegmentationModule, pl.Trainer]:
        """Fit a freshly built model on the labeled view; all ranks end with rank 0's
        weights."""
        pl.seed_everything(
            self.seed * 1000 + r + 100 * (plan.stage - 1), workers=True, verbose=False
        )
        model = self.model_factory(plan.stage, plan.span)
        if plan.init is not None:
            model.load_state_dict(plan.init, strict=False)
        self.tracker.phase(r, "fit" if plan.stage == 1 else "fit stage 2", len(self.dm.labeled))
        trainer = self.trainer_factory([], plan.max_steps, plan.max_epochs)
        try:
            trainer.fit(model, train_dataloaders=self.dm.train_dataloader(trainer.world_size))
        except ValueError as e:  # batch norm on a (1, C, 1, 1) tensor: say what to change
            if "Expected more than 1 value per channel" not in str(e):
                raise
            n, world = len(self.dm.labeled), trainer.world_size
            raise ValueError(
                f"round {r}'s fit has {n} labeled image{'s' * (n != 1)} for {world} "
                f"process{'es' * (world != 1)}: a batch of one image cannot be batch-normalised "
                "after the network's global pooling (DeepLabV3/V3+'s pooling branch); label "
                "more images in round 0 (active.init_budget, active.budget) or run on fewer "
                "processes (trainer.devices)"
            ) from e
        # every rank continues with the weights the checkpoint holds (so a resumed run
        # evaluates and scores with the same model as an uninterrupted one)
        adopt_rank_zero_state(trainer, model)
        return model, trainer

    def fit(self, r: int) -> None:
        """Stage 1 on the store's labels; extensions may train more (stage 2)."""
        init = None if r == 0 or self.reinit else self.rundir.load_checkpoint(r - 1)
        plan = FitPlan(stage=1, init=init)
        for ext in self.extensions:
            plan = ext.plan_fit(r, plan)
        model, trainer = self.train(r, plan)
        if self.rank_zero:
            self.rundir.save_checkpoint(r, model.state_dict(), keep=self.keep_checkpoints)
        fit = FitResult(model, trainer, model)
        for ext in self.extensions:
            ext.after_fit(r, fit)
        self.model, self.eval_model = fit.model, fit.eval_model
        self._commit_state(r, Phase.FITTED)

    def evaluation_model(self, r: int) -> SegmentationModule:
        if self.eval_model is None:
            owned = [m for ext in self.extensions if (m := ext.evaluation_model(r)) is not None]
            self.eval_model = owned[-1] if owned else self.stage1_model(r)
        return self.eval_model

    def evaluate(self, r: int) -> dict[str, Any]:
        model = self.evaluation_model(r)
        self.tracker.phase(r, "evaluate")
        trainer = self.trainer_factory([])
        model.last_metrics = {}
        trainer.validate(model, dataloaders=self.dm.val_dataloader(), verbose=False)
        trainer.test(model, dataloaders=self.dm.test_dataloader(), verbose=False)
        extra = {k: v for ext in self.extensions for k, v in ext.metrics_row(r).items()}
        row = round_row(r, self.store, self.region_sizes, model.last_metrics, extra)
        if self.rank_zero:
            rows = self.rundir.write_metrics_row(row)
            plot_curve(rows, self.rundir.curve_path, title=self.schedule.name)
            self._commit_state(r, Phase.EVALUATED)
        self.tracker.log_round(row)
        return row

    def fresh_model(self, r: int) -> SegmentationModule:
        """A freshly built model (its encoder as ``model.encoder_weights`` gives it: the
        pre-trained one), the same on every rank: what cold-start strategies embed with."""
        pl.seed_everything(self.seed * 1000 + r + 900, workers=True, verbose=False)
        return self.model_factory(1, TrainSpan())

    def acquire(self, r: int, budget: float | None = None) -> tuple[Annotations, Selection]:
        """Score the pool with the model of round ``r - 1`` (a fresh one for strategies that
        embed with the pre-trained encoder) and choose round ``r``'s queries for ``budget``
        clicks (default: a round's): the pool passes run on every rank, the decision on rank
        0, and its result is broadcast, so every rank returns the same answers."""
        s, gen, labeled = self.schedule.at(r), self._generator(r), self.store.labeled_mask()
        budget = self.budget if budget is None else budget
        if not s.requires_model:  # the same generator on every rank: the same choice
            stats = PoolStats.none_scored(len(labeled))
            return decide(s, stats, self.oracle, labeled, budget, gen, r)
        if len(self.dm.pool) == 0:
            raise ValueError("the pool is empty: every region is already labeled")
        model = (
            self.fresh_model(r) if getattr(s, "fresh_model", False) else self.stage1_model(r - 1)
        )
        # MC dropout draws from the global RNG: seed it so that a resumed run scores alike.
        pl.seed_everything(self.seed * 1000 + r + 500, workers=True, verbose=False)
        self.tracker.phase(r - 1, "score", len(self.dm.pool))
        stats, trainer = score_pool(
            s, model, self.trainer_factory, self.dm, labeled, self.channels_last
        )
        result = None
        if trainer.is_global_zero:
            result = decide(s, stats, self.oracle, labeled, budget, gen, r)
        decided = trainer.strategy.broadcast(result, src=0)  # rank 0's decision, everywhere
        assert decided is not None
        return decided

    def _ask_people(self, ann: Annotations) -> bool:
        """The answers come from people (nothing to ask: the empty round is committed)."""
        return not self.oracle.answers_now and len(ann.region_ids) > 0

    def await_answers(self, r: int, ann: Annotations) -> None:
        """People answer: write round ``r``'s queries to the run dir and stop there
        (``alseg export`` / ``alseg import``, then ``alseg resume``)."""
        if self.rank_zero:
            o = self.oracle
            names = list(self.dm.class_names)
            q = QueryRound.from_annotations(
                r,
                ann,
                self.dm.regions,
                o.label_type,
                names,
                o.void_bit,
                self.state.run_id or "",
            )
            with self.rundir.transaction():
                save_queries(self.rundir, q)
                self._commit_state(r, Phase.AWAITING_ANSWERS)
        self.tracker.awaiting(r, len(ann.region_ids))

    def select(self, r: int) -> str:
        """Choose, answer and commit the labels of round ``r``; the phase reached
        (``labeled``, or ``awaiting_answers`` when people answer)."""
        ann, selection = self.acquire(r)
        if self._ask_people(ann):
            self.await_answers(r, ann)
            return Phase.AWAITING_ANSWERS
        for ext in self.extensions:
            ext.after_select(r, ann, selection)
        self.commit(r, ann)
        self.model = self.eval_model = None
        return Phase.LABELED

    # -- driver ---------------------------------------------------------------------------
    def _start(self) -> tuple[int, str]:
        """Round and phase to continue from: the run dir's state, or a new round 0."""
        if self.state.phase is not None:
            r, phase = self.state.round, self.state.phase
            if phase == Phase.DONE and r + 1 < self.rounds:  # extended: select round r + 1
                phase = Phase.EVALUATED
            if phase == Phase.AWAITING_ANSWERS:  # nothing to do until the answers are imported
                self.tracker.awaiting(r, len(load_queries(self.rundir, r).pending))
                return r, phase
            self.store.load(self.rundir.labels_path(r))
            self.dm.refresh()
            for ext in self.extensions:
                ext.on_resume(r, phase)
            self.tracker.resumed(r, phase)
            return r, phase
        if self.init_budget > 0:  # round 0's set: random, or the schedule's first strategy
            init, _ = self.acquire(0, self.init_budget)
        else:  # source-only round 0
            init = self.oracle.annotate(np.zeros(0, dtype=np.int64))
        if self._ask_people(init):
            self.await_answers(0, init)
            return 0, Phase.AWAITING_ANSWERS
        self.commit(0, init)
        return 0, Phase.LABELED

    def run(self) -> list[dict[str, Any]]:
        """Run from the state in the run dir (fresh or resumed) to the end."""
        try:
            r, phase = self._start()
            while phase not in (Phase.DONE, Phase.AWAITING_ANSWERS):
                if phase == Phase.LABELED:
                    self.fit(r)
                    phase = Phase.FITTED
                elif phase == Phase.FITTED:
                    self.evaluate(r)
                    phase = Phase.EVALUATED
                elif r + 1 >= self.rounds:
                    self._commit_state(r, Phase.DONE)
                    phase = Phase.DONE
                else:
                    r, phase = r + 1, self.select(r + 1)
            # Other ranks may finish before rank 0 has written the last row: they return none.
            rows = [dict(x) for x in self.rundir.read_metrics()] if self.rank_zero else []
            self.tracker.finish(rows)
            return rows
        except BaseException:
            self.tracker.abort()  # a resume in this process starts a new W&B piece
            raise
        finally:
            self.close()

    def close(self) -> None:
        """Release the run dir (its lock)."""
        self.rundir.release_lock()
