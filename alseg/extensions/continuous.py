"""Selections during one training run (``active.schedule=continuous``), as RIPU and LAMDA
do: round r's fit continues round r-1's (weights, optimizer state, one learning-rate
schedule over the whole run) for ``steps_per_round`` iterations; round 0 runs
``init_steps`` (LAMDA's source-only stage 0, trained longer than the gaps between
selections) and the last round ``final_steps`` (RIPU trains on after its last selection);
the learning rate follows one schedule over ``lr_total_steps`` (default: the whole run).
The optimizer state of each round is saved with its checkpoint, so a killed run resumes
the same schedule.
"""

from __future__ import annotations

from dataclasses import replace

from alseg.extensions.base import Extension, FitPlan, FitResult
from alseg.models.segmentation import TrainSpan


class ContinuousSchedule(Extension):
    """Args:
    steps_per_round: iterations between selections (``trainer.max_steps``).
    init_steps: iterations of round 0 (0: ``steps_per_round``).
    rounds: rounds of the run (the schedule spans all of them).
    keep_checkpoints: optimizer states kept (last rounds).
    final_steps: iterations of the last round (0: ``steps_per_round``).
    lr_total_steps: length of the lr schedule (0: the run's iterations).
    """

    name = "continuous"

    def __init__(
        self,
        steps_per_round: int,
        init_steps: int,
        rounds: int,
        keep_checkpoints: int = 2,
        final_steps: int = 0,
        lr_total_steps: int = 0,
    ) -> None:
        if steps_per_round < 1:
            raise ValueError(f"steps_per_round={steps_per_round} must be >= 1")
        self.steps, self.init_steps = steps_per_round, init_steps or steps_per_round
        self.final_steps = final_steps or steps_per_round
        self.rounds, self.keep = rounds, keep_checkpoints
        self.lr_total = lr_total_steps or self.step_offset(rounds)

    def step_offset(self, r: int) -> int:
        """Iterations done before round ``r`` (``r = rounds``: the whole run)."""
        if r == 0:
            return 0
        if r == self.rounds and r > 1:
            return self.step_offset(r - 1) + self.final_steps
        return self.init_steps + (r - 1) * self.steps

    def plan_fit(self, r: int, plan: FitPlan) -> FitPlan:
        if plan.stage != 1:
            return plan
        rundir = self.loop.rundir
        span = TrainSpan(
            self.step_offset(r),
            self.lr_total,
            rundir.load_optimizer(r - 1) if r > 0 else None,
        )
        return replace(
            plan,
            init=rundir.load_checkpoint(r - 1) if r > 0 else None,
            span=span,
            max_steps=self.step_offset(r + 1) - self.step_offset(r),
            max_epochs=-1,
        )

    def after_fit(self, r: int, fit: FitResult) -> None:
        if self.loop.rank_zero:
            state = fit.trainer.optimizers[0].state_dict()
            self.loop.rundir.save_optimizer(r, state, keep=self.keep)
