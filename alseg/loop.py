"""The active-learning round loop: plain Python around Lightning, resumable by phase.

A round r is: fit on the labels committed so far -> evaluate (val + test) -> score the
pool -> select -> annotate -> commit the labels of round r + 1. Round 0's labels are a
random set under the same click budget. After each phase the run dir records it, so a
killed run resumes at the next phase with nothing lost and nothing paid twice:

    labeled(r) --fit--> fitted(r) --eval--> evaluated(r) --select--> labeled(r+1)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.sieve import SieveConfig, sieve_labels
from alseg.acquisition.strategies import RandomStrategy, Stats, Strategy
from alseg.callbacks.acquisition import AcquisitionCallback
from alseg.data.datamodule import ActiveDataModule
from alseg.data.labels import NO_CLASS, Annotations, LabelStore
from alseg.data.oracle import SimulatedOracle
from alseg.models.pseudo_labels import pseudo_label_accuracy, pseudo_label_images
from alseg.models.segmentation import SegmentationModule
from alseg.plots import plot_curve
from alseg.rundir import RunDir
from alseg.tracking import Tracker


class TrainerFactory(Protocol):
    """Builds a Trainer with extra callbacks (``max_steps``: None = the configured one)."""

    def __call__(
        self, callbacks: list[pl.Callback], max_steps: int | None = None
    ) -> pl.Trainer: ...


def acquire(
    strategy: Strategy,
    stats: Stats,
    store: LabelStore,
    oracle: SimulatedOracle,
    budget: float,
    generator: torch.Generator,
) -> Annotations:
    """Pure selection step: region statistics -> scores -> budgeted selection -> answers."""
    labeled = torch.from_numpy(store.labeled_mask())
    scores = strategy.scores(stats, labeled, generator).float().cpu()
    costs = torch.from_numpy(oracle.query_costs(np.arange(store.num_regions)))
    ids = strategy.select(scores, costs, labeled, budget, stats, generator).cpu()
    if "root" in stats:  # merged regions: one query labels all base regions of its root
        ann = oracle.annotate_merged(
            ids.numpy(), stats["root"].cpu().numpy(), scores[ids].double().numpy()
        )
        rows = torch.from_numpy(ann.region_ids)
    else:
        ann = oracle.annotate(ids.numpy(), scores[ids].double().numpy())
        rows = ids
    if "pred" in stats:
        ann.predicted = stats["pred"].cpu()[rows].numpy()
    return ann


def check_budget(pool_cost: float, init_budget: float, budget: float, rounds: int) -> None:
    """Fail before anything runs when the planned clicks cannot be spent on the pool."""
    if budget <= 0:
        raise ValueError(f"active.budget={budget:g} must be > 0")
    if init_budget < 0:
        raise ValueError(f"active.init_budget={init_budget:g} must be >= 0")
    if pool_cost <= 0:
        raise ValueError("the pool is empty: there is no region to label")
    planned = init_budget + budget * (rounds - 1)
    if planned > pool_cost:
        raise ValueError(
            f"the run plans {planned:g} clicks (active.init_budget={init_budget:g} + "
            f"{rounds - 1} rounds x active.budget={budget:g}) but the whole pool costs "
            f"{pool_cost:g} clicks; lower active.budget or active.rounds, or enlarge the pool"
        )


class ActiveLoop:
    """Runs (or resumes) one active-learning experiment in a run dir.

    Args:
        rundir: where state is read and written.
        datamodule: pool, val, test, region maps and the LabelStore.
        oracle: answers queries.
        strategy: acquisition strategy of rounds >= 1.
        model_factory: ``stage ->`` a freshly initialised SegmentationModule (stage 1 or 2).
        trainer_factory: builds a Trainer with extra callbacks.
        rounds: number of trained-and-evaluated rounds (rows of metrics.csv).
        budget: clicks per round; ``init_budget`` for round 0 (random).
        reinit: re-initialise the model each round (else warm-start from the last).
        seed: experiment seed (round r trains with seed + r).
        tracker: W&B / console reporting.
        keep_checkpoints: model checkpoints kept (last rounds).
        rank_zero: whether this process writes the run dir (DDP rank 0).
        stage2: MulActSeg's stage 2 (pseudo labels, then retraining) each round.
        channels_last: score the pool with NHWC tensors.
        sieve: drop labeled pixels below the knee of the model's confidence (adaptive).
        steps_per_round: > 0: the continuous schedule, a selection every so many iterations.
        init_steps: iterations of round 0 in the continuous schedule (LAMDA's source-only
            stage 0 trained to convergence); 0 = ``steps_per_round``.
    """

    def __init__(
        self,
        rundir: RunDir,
        datamodule: ActiveDataModule,
        oracle: SimulatedOracle,
        strategy: Strategy,
        model_factory: Callable[[int], SegmentationModule],
        trainer_factory: TrainerFactory,
        rounds: int,
        budget: float,
        init_budget: float,
        reinit: bool,
        seed: int,
        tracker: Tracker,
        keep_checkpoints: int = 2,
        rank_zero: bool = True,
        stage2: bool = False,
        channels_last: bool = False,
        sieve: SieveConfig | None = None,
        steps_per_round: int = 0,
        init_steps: int = 0,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"active.rounds={rounds} must be >= 1")
        self.rundir, self.dm, self.oracle, self.strategy = rundir, datamodule, oracle, strategy
        self.store = datamodule.store
        self.model_factory, self.trainer_factory = model_factory, trainer_factory
        self.rounds, self.budget, self.init_budget = rounds, budget, init_budget
        self.reinit, self.seed, self.tracker = reinit, seed, tracker
        self.keep_checkpoints = keep_checkpoints
        # Under DDP every rank runs this loop and applies the same label updates; only rank
        # 0 writes the run dir.
        self.rank_zero = rank_zero
        pool_cost = float(oracle.query_costs(np.arange(self.store.num_regions)).sum())
        check_budget(pool_cost, init_budget, budget, rounds)
        self.region_sizes = datamodule.regions.region_sizes()
        self.stage2 = stage2
        self.channels_last = channels_last
        self.model: SegmentationModule | None = None  # stage 1 (acquisition)
        self.eval_model: SegmentationModule | None = None  # evaluated (stage 2 if enabled)
        self.pseudo_stats: dict[str, float] = {}
        self.sieve_cfg = sieve
        self.sieve_stats: dict[str, float] = {}
        # Continuous schedule (steps_per_round > 0): one training run with a selection every
        # steps_per_round iterations (RIPU, LAMDA): weights, optimizer state and the lr
        # schedule carry on from round to round.
        self.steps_per_round = steps_per_round
        self.init_steps = init_steps or steps_per_round
        self.label_dist: dict[str, Any] = {}  # LAMDA: estimated vs true target distribution
        self._true_dist: np.ndarray | None = None

    # -- state ---------------------------------------------------------------------------
    def _state(self, round: int, phase: str) -> None:
        if not self.rank_zero:
            return
        prev = self.rundir.read_state() if self.rundir.state_path.exists() else {}
        prev.update(round=round, phase=phase, seed=self.seed, spent=self.store.spent())
        prev.update(self.tracker.state())
        self.rundir.write_state(prev)

    def _generator(self, round: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 1_000_003 + round)

    # -- phases --------------------------------------------------------------------------
    def commit(self, round: int, ann: Annotations) -> None:
        """Record the answers of ``round``: selections CSV, labels file, then state."""
        self.store.add(ann, round)
        images, local = self.dm.regions.split_ids(ann.region_ids)
        names = self.dm.labeled.dataset.class_names  # type: ignore[attr-defined]
        answers = describe_answers(ann, names)
        pred = ann.predicted if ann.predicted is not None else np.full(len(ann), -1)
        rows = [
            {
                "image": int(i),
                "region": int(r),
                "score": f"{s:.6g}",
                "cost": f"{c:g}",
                "answer": a,
                "predicted": names[p] if 0 <= p < len(names) else "",
            }
            for i, r, s, c, a, p in zip(images, local, ann.scores, ann.costs, answers, pred)
        ]
        if ann.query is not None:  # merged regions: the root (local id) of each row's query
            for row, q in zip(rows, self.dm.regions.split_ids(ann.query)[1]):
                row["query"] = int(q)
        if self.rank_zero:
            self.rundir.write_selections(round, rows)
            self.store.save(self.rundir.labels_path(round))
            self._state(round, "labeled")
        self.dm.refresh()
        self.tracker.log_selection(round, ann, rows, self.dm)

    def _train(
        self,
        round: int,
        stage: int,
        init: dict[str, torch.Tensor] | None,
        optimizer: dict[str, Any] | None = None,
    ) -> SegmentationModule:
        """Fit a freshly built model (stage 1 or 2) on the labeled view; all ranks end with
        rank 0's weights."""
        pl.seed_everything(
            self.seed * 1000 + round + 100 * (stage - 1), workers=True, verbose=False
        )
        model = self.model_factory(stage)
        if init is not None:
            model.load_state_dict(init, strict=False)
        continuous = self.steps_per_round > 0 and stage == 1
        if continuous:
            model.step_offset = self.step_offset(round)
            model.total_steps = self.step_offset(self.rounds)
            model.init_optimizer_state = optimizer
        self.tracker.phase(round, "fit" if stage == 1 else "fit stage 2", len(self.dm.labeled))
        # continuous: this round's share of the one training run
        steps = self.step_offset(round + 1) - self.step_offset(round) if continuous else None
        trainer = self.trainer_factory([], steps)
        trainer.fit(model, train_dataloaders=self.dm.train_dataloader())
        if trainer.world_size > 1:
            # DDP syncs parameters, not batch-norm statistics: every rank continues with
            # rank 0's weights, the ones the checkpoint holds (so a resumed run evaluates
            # and scores with the same model as an uninterrupted one).
            state = trainer.strategy.broadcast(
                {k: v.cpu() for k, v in model.state_dict().items()}, src=0
            )
            model.load_state_dict(state)
        return model

    def step_offset(self, round: int) -> int:
        """Continuous schedule: iterations done before ``round`` (round 0 runs
        ``init_steps``, every later round ``steps_per_round``)."""
        return 0 if round == 0 else self.init_steps + (round - 1) * self.steps_per_round

    def fit(self, round: int) -> None:
        """Stage 1 on the store's labels; with ``stage2``, pseudo labels from the stage-1
        model and a re-initialised stage-2 model trained on them (MulActSeg). Acquisition
        always uses the stage-1 model; evaluation the last stage."""
        continuous = self.steps_per_round > 0
        warm = (
            None
            if round == 0 or (self.reinit and not continuous)
            else self.rundir.load_checkpoint(round - 1)
        )
        optim = self.rundir.load_optimizer(round - 1) if continuous and round > 0 else None
        model = self._train(round, 1, warm, optim)
        if self.rank_zero:
            self.rundir.save_checkpoint(round, model.state_dict(), keep=self.keep_checkpoints)
            if continuous:
                state = model.trainer.optimizers[0].state_dict()
                self.rundir.save_optimizer(round, state, keep=self.keep_checkpoints)
        self.model, self.eval_model = model, model
        if self.stage2:
            pseudo = self.pseudo_labels(round, model)
            self.dm.labeled.set_pseudo_labels(pseudo)
            try:
                self.eval_model = self._train(round, 2, None)
            finally:
                self.dm.labeled.set_pseudo_labels(None)
            if self.rank_zero:
                self.rundir.save_checkpoint(
                    round, self.eval_model.state_dict(), keep=self.keep_checkpoints, stage=2
                )
        self._state(round, "fitted")

    def pseudo_labels(self, round: int, model: SegmentationModule) -> dict[int, torch.Tensor]:
        """Stage-2 pseudo labels of the labeled images, saved with their accuracy against
        ground truth (logged for evaluation only; it never feeds training)."""
        self.tracker.phase(round, "pseudo labels", len(self.dm.labeled))
        view, regions = self.dm.labeled, self.dm.regions
        images, maps, classes, labeled = {}, {}, {}, {}
        lab = self.store.labeled_mask()
        for i in view.indices.tolist():
            ids = np.arange(regions.offsets[i], regions.offsets[i + 1])
            images[i] = view.dataset[i]["image"]
            maps[i] = regions.map_tensor(i)
            classes[i] = torch.from_numpy(self.store.class_sets(ids))
            labeled[i] = torch.from_numpy(lab[ids])
        pseudo = pseudo_label_images(model, images, maps, classes, labeled, view.ignore_index)
        masks = {i: view.mask_fn(i) for i in pseudo}
        acc, coverage = pseudo_label_accuracy(pseudo, masks, view.ignore_index)
        self.pseudo_stats = {
            "pseudo_acc": round_float(100 * acc),
            "pseudo_coverage": round_float(100 * coverage),
        }
        if self.rank_zero:
            self.rundir.save_pseudo_labels(round, pseudo, self.pseudo_stats)
        return pseudo

    def _model_of(self, round: int) -> SegmentationModule:
        """The stage-1 model of ``round`` (the acquisition model)."""
        if self.model is None:  # resumed after the fit: load its weights
            self.model = self.model_factory(1)
            self.model.load_state_dict(self.rundir.load_checkpoint(round), strict=False)
        return self.model

    def _eval_model_of(self, round: int) -> SegmentationModule:
        """The model evaluated for ``round``: stage 2 when enabled, else stage 1."""
        if self.eval_model is None:
            if not self.stage2:
                return self._model_of(round)
            self.eval_model = self.model_factory(2)
            self.eval_model.load_state_dict(
                self.rundir.load_checkpoint(round, stage=2), strict=False
            )
            self.pseudo_stats = self.rundir.read_pseudo_stats(round)
        return self.eval_model

    def evaluate(self, round: int) -> dict[str, Any]:
        model = self._eval_model_of(round)
        self.tracker.phase(round, "evaluate")
        trainer = self.trainer_factory([])
        model.last_metrics = {}
        trainer.validate(model, dataloaders=self.dm.val_dataloader(), verbose=False)
        trainer.test(model, dataloaders=self.dm.test_dataloader(), verbose=False)
        m = model.last_metrics
        usable = self.store.labeled_mask() & (self.store.region_targets() != NO_CLASS)
        row: dict[str, Any] = {
            "round": round,
            "clicks": round_float(self.store.spent()),
            "labeled_regions": int(self.store.labeled_mask().sum()),
            "labeled_pixels_pct": round_float(
                100 * self.region_sizes[usable].sum() / self.region_sizes.sum()
            ),
            "val_mIoU": round_float(m["val/mIoU"]),
            "mIoU": round_float(m["test/mIoU"]),
            "acc": round_float(m["test/acc"]),
            **(self.pseudo_stats if self.stage2 else {}),
            **(self._sieve_row(round) if self.sieve_cfg is not None else {}),
            **self._label_dist_row(round),
        }
        row.update(
            {
                k.replace("test/", ""): round_float(v)
                for k, v in m.items()
                if k.startswith("test/IoU_")
            }
        )
        if self.rank_zero:
            rows = self.rundir.write_metrics_row(row)
            plot_curve(rows, self.rundir.curve_path, title=self.strategy.name)
            self._state(round, "evaluated")
        self.tracker.log_round(row)
        return row

    def select(self, round: int) -> Annotations:
        """Choose the labels of ``round`` with the model of ``round - 1``."""
        gen = self._generator(round)
        if not self.strategy.requires_model:
            return acquire(self.strategy, {}, self.store, self.oracle, self.budget, gen)
        if len(self.dm.pool) == 0:
            raise ValueError("the pool is empty: every region is already labeled")
        model = self._model_of(round - 1)
        if hasattr(self.strategy, "round"):  # LAMDA's free-pick cap grows with the round
            self.strategy.round = round
        # MC dropout draws from the global RNG: seed it so that a resumed run scores alike.
        pl.seed_everything(self.seed * 1000 + round + 500, workers=True, verbose=False)
        self.tracker.phase(round - 1, "score", len(self.dm.pool))
        regions = self.dm.regions
        scorer = PoolScorer(
            self.strategy, regions.num_regions, regions.offsets, self.store.labeled_mask()
        )

        def choose(stats: Stats) -> Annotations:
            if "root" in stats and self.rank_zero:  # adaptive superpixels of this round
                self.rundir.save_merged(round, stats["root"].cpu().numpy(), regions.offsets)
            return acquire(self.strategy, stats, self.store, self.oracle, self.budget, gen)

        callback = AcquisitionCallback(scorer, choose, channels_last=self.channels_last)
        trainer = self.trainer_factory([callback])
        for _ in range(self.strategy.passes):
            trainer.predict(model, dataloaders=self.dm.pool_dataloader(), return_predictions=False)
        assert callback.result is not None
        return callback.result

    # -- sieving (adaptive superpixels) ------------------------------------------------------
    def sieve(self, round: int, ann: Annotations) -> None:
        """Drop masks of the new labels, from the model that selected them; written before
        the labels are committed, so a resumed run finds them."""
        if self.sieve_cfg is None or round == 0:
            return
        view = self.dm.labeled
        drops, self.sieve_stats = sieve_labels(
            self._model_of(round - 1),
            view.dataset,
            self.dm.regions,
            view.mask_fn,
            ann,
            self.sieve_cfg,
            view.ignore_index,
        )
        if self.rank_zero:
            self.rundir.save_sieve(round, drops, self.sieve_stats)
        view.set_sieve(_or_masks(view.drops, drops))

    def _load_sieves(self, round: int) -> None:
        if self.sieve_cfg is None:
            return
        drops: dict[int, torch.Tensor] = {}
        for r in range(1, round + 1):
            more, self.sieve_stats = self.rundir.load_sieve(r)
            drops = _or_masks(drops, more)
        self.dm.labeled.set_sieve(drops)

    def _sieve_row(self, round: int) -> dict[str, float]:
        keys = ("sieve_kept_acc", "sieve_dropped_acc", "sieve_dropped_pct", "sieve_regions")
        stats = self.sieve_stats if round > 0 else {}
        return {k: stats.get(k, float("nan")) for k in keys}

    # -- label-distribution matching (LAMDA) --------------------------------------------------
    def match_source(self, round: int, ann: Annotations) -> None:
        """Estimate the target label distribution from the labels so far (with ``ann``) and
        this round's free picks, re-sample the source to follow it, and record the estimate
        against the true distribution of the pool (dominant classes of all regions; for the
        record only). Written before the labels are committed, so a resumed run finds it."""
        if not self._matches_labels:
            return
        estimate = self.strategy.target_distribution  # type: ignore[attr-defined]
        C = int(self.oracle.num_classes)
        targets = self.store.region_targets()
        old = self.store.labeled_mask() & (targets >= 0) & (targets < C)
        new = ann.classes[(ann.classes >= 0) & (ann.classes < C)]
        counts = np.bincount(targets[old], minlength=C)[:C] + np.bincount(new, minlength=C)[:C]
        p_t = np.asarray(estimate(counts), dtype=np.float64)
        true = self._true_distribution()
        self.label_dist = {
            "round": round,
            "estimate": p_t.tolist(),
            "true": true.tolist(),
            "l1": float(np.abs(p_t - true).sum()),
        }
        if self.rank_zero:
            self.rundir.write_json(f"label_dist/round_{round:02d}.json", self.label_dist)
        self.dm.set_source_prior(p_t)

    @property
    def _matches_labels(self) -> bool:
        """LAMDA-style label matching: a strategy that estimates the target label
        distribution, and a source domain to re-sample."""
        return hasattr(self.strategy, "target_distribution") and self.dm.source is not None

    def _true_distribution(self) -> np.ndarray:
        if self._true_dist is None:
            C = int(self.oracle.num_classes)
            dom = np.concatenate(
                [self.oracle.dominant_classes(i) for i in range(len(self.dm.regions))]
            )
            counts = np.bincount(dom[dom < C], minlength=C)[:C].astype(np.float64)
            self._true_dist = counts / max(counts.sum(), 1.0)
        return self._true_dist

    def _load_label_dist(self, round: int) -> None:
        if not self._matches_labels:
            return
        for r in range(round, 0, -1):
            data = self.rundir.read_json(f"label_dist/round_{r:02d}.json")
            if data is not None:
                self.label_dist = data
                self.dm.set_source_prior(np.asarray(data["estimate"]))
                return

    def _label_dist_row(self, round: int) -> dict[str, float]:
        if not self._matches_labels:
            return {}
        ok = self.label_dist.get("round") == round
        return {"label_dist_l1": round_float(self.label_dist["l1"]) if ok else float("nan")}

    # -- driver --------------------------------------------------------------------------
    def run(self) -> list[dict[str, Any]]:
        """Run from the state in the run dir (fresh or resumed) to the end."""
        if self.rundir.state_path.exists():
            state = self.rundir.check()
            round, phase = int(state["round"]), str(state["phase"])
            self.store.load(self.rundir.labels_path(round))
            self.dm.refresh()
            self._load_sieves(round)
            self._load_label_dist(round)
            self.tracker.resumed(round, phase)
        else:
            init = (
                acquire(
                    RandomStrategy(),
                    {},
                    self.store,
                    self.oracle,
                    self.init_budget,
                    self._generator(0),
                )
                if self.init_budget > 0
                else self.oracle.annotate(np.zeros(0, dtype=np.int64))  # source-only round 0
            )
            self.commit(0, init)
            round, phase = 0, "labeled"

        while phase != "done":
            if phase == "labeled":
                self.fit(round)
                phase = "fitted"
            elif phase == "fitted":
                self.evaluate(round)
                phase = "evaluated"
            elif phase == "evaluated":
                if round + 1 >= self.rounds:
                    self._state(round, "done")
                    phase = "done"
                else:
                    ann = self.select(round + 1)
                    self.sieve(round + 1, ann)
                    self.match_source(round + 1, ann)
                    self.commit(round + 1, ann)
                    self.model = self.eval_model = None
                    round, phase = round + 1, "labeled"
        # Other ranks may finish before rank 0 has written the last row: they return none.
        rows = [dict(r) for r in self.rundir.read_metrics()] if self.rank_zero else []
        self.tracker.finish(rows)
        return rows


def describe_answers(ann: Annotations, names: list[str] | tuple[str, ...]) -> list[str]:
    """Readable answers for the selections CSV: a class name, "void" (no usable class),
    "pixels", or the classes of a multi-class answer joined by "|"."""
    if ann.label_type == "pixel":
        return ["pixels"] * len(ann)
    if ann.bits is not None:
        labels = [*names, "void"]
        return ["|".join(labels[c] for c in np.flatnonzero(b)) or "none" for b in ann.bits]
    return [names[k] if k != NO_CLASS else "void" for k in ann.classes]


def _or_masks(a: dict[int, torch.Tensor], b: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    out = dict(a)
    for i, m in b.items():
        out[i] = out[i] | m if i in out else m
    return out


def round_float(x: float, digits: int = 4) -> float:
    return float(round(float(x), digits))
