"""What every acquisition strategy is made of.

A strategy is used in steps, so that the pool is streamed (``passes`` times) and only
region-level tensors are kept:

1. ``region_stats(batch) -> RegionStats`` for each batch of the pool: reduces the batch's
   outputs to per-region statistics ((n, ...): ``score``, ``pred``, ``root`` and any other
   in ``regions``), per-image statistics (``images``, (B, ...)) or rows of a bounded group
   (``cand``: candidates, ``center``: labeled centers, each ``Rows``: a key per row and any
   row fields; the scorer keeps the ``max_candidates`` rows of largest key), on the outputs'
   device. ``batch.pass_index`` says which pass it is and ``batch.context`` holds what
   ``end_pass`` returned after the previous one.
2. ``end_pass(index, stats) -> context`` between passes (e.g. class weights from a first
   pass). It runs on every process with the same combined ``PoolStats``, so the context is
   the same on every rank: a strategy keeps no state between passes or rounds.
3. ``scores(stats, labeled, generator)``: (R,) region scores, larger = more informative;
   then ``select(scores, stats, ctx)`` -> a ``Selection``: the queried regions plus
   whatever later training needs from this selection (e.g. LAMDA's free picks), which
   travels to every rank with the answers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from alseg.acquisition import scores as S
from alseg.acquisition.reduce import region_reduce
from alseg.acquisition.select import budgeted_topk, power_keys
from alseg.models.segmentation import PredictOutputs

Stats = dict[str, torch.Tensor]


NAMED = ("score", "pred", "root")  # the per-region statistics RegionStats names


@dataclass
class Rows:
    """Feature rows of a bounded group (candidate regions, labeled centers).

    Attributes:
        key: (n,) rank of each row: the scorer keeps the ``max_candidates`` rows of largest
            key (ties: lower id); a row with key -inf is never kept.
        fields: (n, ...) row tensors by name, e.g. ``feat`` (n, D).
        ids: (n,) long global region id of each row; set by the scorer (after
            ``PoolScorer.compute``, -1 marks an empty row).
    """

    key: torch.Tensor
    fields: Stats = field(default_factory=dict)
    ids: torch.Tensor | None = None

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Rows:
        """``fn`` applied to the key, every field and the ids."""
        ids = None if self.ids is None else fn(self.ids)
        return Rows(fn(self.key), {n: fn(v) for n, v in self.fields.items()}, ids)

    def take(self, index: torch.Tensor) -> Rows:
        """The rows at ``index`` (a bool mask or positions)."""
        return self.map(lambda t: t[index])

    def known_ids(self) -> torch.Tensor:
        """``ids``, which the scorer sets on every row it keeps."""
        assert self.ids is not None, "rows that did not come through the PoolScorer"
        return self.ids

    @staticmethod
    def cat(groups: list[Rows]) -> Rows:
        """The rows of ``groups`` one after the other (the fields of the first)."""
        return Rows(
            torch.cat([g.key for g in groups]),
            {n: torch.cat([g.fields[n] for g in groups]) for n in groups[0].fields},
            torch.cat([g.known_ids() for g in groups]),
        )


@dataclass
class RegionStats:
    """What a strategy's ``region_stats`` makes of one batch: tensors on the outputs' device.

    Attributes:
        score: (n,) larger = more informative; what ``Strategy.scores`` returns by default.
        pred: (n,) long class the model predicts for each region, for the selection record
            (None: the scorer fills in the majority of the pixels' top-1 class).
        root: (n,) long global id of the root of each region's merged region (merged
            regions: one query labels every region of its root).
        regions: (n, ...) any other per-region statistic, by name.
        images: (B, ...) per-image statistics, by name.
        cand: rows of candidate regions; ``center``: rows of labeled centers.
    """

    score: torch.Tensor | None = None
    pred: torch.Tensor | None = None
    root: torch.Tensor | None = None
    regions: Stats = field(default_factory=dict)
    images: Stats = field(default_factory=dict)
    cand: Rows | None = None
    center: Rows | None = None

    def per_region(self) -> Stats:
        """Every per-region statistic by name: ``score``, ``pred``, ``root`` (those set)
        and ``regions``."""
        named = {n: getattr(self, n) for n in NAMED if getattr(self, n) is not None}
        clash = sorted(named.keys() & self.regions.keys())
        if clash:
            raise ValueError(f"regions must not repeat the named statistics {clash}")
        return {**named, **self.regions}

    def groups(self) -> dict[str, Rows]:
        """The row groups that are set, by name (``cand``, ``center``)."""
        return {n: g for n, g in (("cand", self.cand), ("center", self.center)) if g is not None}


@dataclass(kw_only=True)
class PoolStats(RegionStats):
    """A strategy's statistics over the whole pool, the same on every rank.

    The fields of ``RegionStats`` over the pool: per-region tensors (R_total, ...) (float
    ones NaN where a region was not scored), per-image tensors (N_images, ...), and each
    group's ``max_candidates`` rows (``ids`` -1 = an empty row).

    Attributes:
        scored: (R_total,) bool, regions seen in the pass.
        image_scored: (N_images,) bool, images seen in the pass.
    """

    scored: torch.Tensor
    image_scored: torch.Tensor

    @classmethod
    def build(
        cls,
        per_region: Stats,
        scored: torch.Tensor,
        images: Stats,
        image_scored: torch.Tensor,
        groups: dict[str, Rows],
    ) -> PoolStats:
        """Statistics from per-region tensors by name (``per_region``'s inverse)."""
        rest = dict(per_region)
        return cls(
            score=rest.pop("score", None),
            pred=rest.pop("pred", None),
            root=rest.pop("root", None),
            regions=rest,
            images=images,
            cand=groups.get("cand"),
            center=groups.get("center"),
            scored=scored,
            image_scored=image_scored,
        )

    @classmethod
    def none_scored(cls, regions: int) -> PoolStats:
        """No pass ran (strategies that need no model): nothing of ``regions`` scored."""
        none = torch.zeros(0, dtype=torch.bool)
        return cls(scored=torch.zeros(regions, dtype=torch.bool), image_scored=none)


@dataclass(frozen=True)
class SelectionContext:
    """What one selection decides under, besides the scores and the pass statistics.

    Attributes:
        costs: (R,) clicks of each region; in ``DiversityStrategy.pick``, of each row.
        labeled: (R,) bool, regions already bought; in ``pick``, rows that are centers.
        budget: clicks to spend.
        generator: the round's random generator (same seed on every rank).
        round_index: the round whose labels are being bought (1 = the first selection).
    """

    costs: torch.Tensor
    labeled: torch.Tensor
    budget: float
    generator: torch.Generator
    round_index: int = 1

    def rows(self, costs: torch.Tensor, labeled: torch.Tensor) -> SelectionContext:
        """The same selection over feature rows: their costs and which are centers."""
        return dataclasses.replace(self, costs=costs, labeled=labeled)


@dataclass
class BatchOutputs:
    """One pool batch as a strategy sees it.

    Attributes:
        logits: (B, C, H, W), or (B, C, H, W, T) with T MC-dropout samples.
        regions: (B, H, W) long batch-compact region ids in [0, num_regions).
        num_regions: regions in the batch (n).
        labeled: (n,) bool, regions already labeled.
        ids: (n,) long global ids of the batch's regions.
        features: (B, D, h, w) decoder features, when the strategy asked for them.
        domain: (B, H, W) probability that each pixel is from the source domain (the
            discriminator of a DomainAdaptationModule), when the strategy asked for it.
        backbone: (B, F, h, w) the encoder's deepest features, when asked for.
        images: (n,) long pool index of the image of each region.
        pass_index: which pass over the pool this is (0, 1, ... < ``Strategy.passes``).
        context: what ``Strategy.end_pass`` returned after the previous pass.
        head_temperature: the temperature the model's classifier divides its raw scores
            by (cosine head: its temperature; linear head: 1), so raw = logits x this.
    """

    logits: torch.Tensor
    regions: torch.Tensor
    num_regions: int
    labeled: torch.Tensor
    ids: torch.Tensor
    features: torch.Tensor | None = None
    domain: torch.Tensor | None = None
    backbone: torch.Tensor | None = None
    images: torch.Tensor | None = None
    pass_index: int = 0
    context: Stats = field(default_factory=dict)
    head_temperature: float = 1.0

    def scaled_logits(self, temperature: float | None) -> torch.Tensor:
        """Logits whose softmax is softmax(raw scores / ``temperature``): a strategy's
        temperature applies to the classifier's raw scores (the cosine of a cosine head,
        the logits of a linear one). None: the logits the model trains with."""
        if temperature is None:
            return self.logits
        return self.logits * (self.head_temperature / temperature)


@dataclass
class Selection:
    """The decision of one selection.

    Attributes:
        ids: (K,) long global ids of the queried regions, in selection order.
        extras: arrays that later training needs from this selection (LAMDA: ``free_ids``
            and ``free_probs`` of its free picks); broadcast to every rank with the answers.
    """

    ids: torch.Tensor
    extras: dict[str, np.ndarray] = field(default_factory=dict)


class Strategy:
    """Base class. Subclasses set the class attributes that the scorer reads.

    Args:
        power: if set, stochastic power sampling (exponent beta = power) replaces
            deterministic top-k for this strategy's scores.
    """

    name = "base"
    requires_model = True
    passes = 1  # pool passes per selection
    mc_samples = 1  # forward passes with dropout on (BALD)
    needs_features = False  # decoder features in BatchOutputs
    needs_domain = False  # domain-discriminator probabilities in BatchOutputs
    max_candidates = 0  # rows of cand/ and center/ groups kept (diversity strategies)

    def __init__(self, power: float | None = None) -> None:
        if power is not None and power <= 0:
            raise ValueError(f"power={power} must be > 0 (the exponent beta of power sampling)")
        self.power = power

    def outputs(self, channels_last: bool = False) -> PredictOutputs:
        """What the model must return in the scoring passes."""
        return PredictOutputs(
            features=self.needs_features,
            mc_samples=self.mc_samples,
            domain=self.needs_domain,
            channels_last=channels_last,
        )

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        raise NotImplementedError

    def end_pass(self, index: int, stats: PoolStats) -> Stats:
        """After pass ``index`` (< passes - 1): the context of the next pass."""
        return {}

    def scores(
        self, stats: PoolStats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Region stats over the pool -> (R,) scores. ``labeled`` (R,) bool."""
        if stats.score is None:
            raise ValueError(f"{self.name}: region_stats set no score and scores() is not defined")
        return stats.score

    def select(
        self,
        scores: torch.Tensor,
        stats: PoolStats,
        ctx: SelectionContext,
    ) -> Selection:
        """(R,) scores -> the selected global region ids (and extras)."""
        if self.power is not None:
            scores = power_keys(scores, self.power, ctx.generator)
        return Selection(budgeted_topk(scores, ctx.costs, ctx.budget, ctx.labeled))


class RandomStrategy(Strategy):
    """Uniformly random regions (the round-0 initial set uses it too)."""

    name = "random"
    requires_model = False

    def scores(
        self, stats: PoolStats, labeled: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        return torch.rand(labeled.shape[0], generator=generator)


def hash_key(ids: torch.Tensor) -> torch.Tensor:
    """A fixed pseudo-random key per global region id (Knuth's multiplicative hash)."""
    return ((ids * 2654435761) % 2**32).float()


class DiversityStrategy(Strategy):
    """Strategies that choose among feature rows (coreset, BADGE, CLUE, LAMDA).

    Rows are kept for at most ``max_candidates`` unlabeled regions (``cand``, by default
    the most uncertain: largest mean entropy) and, with ``uses_centers``, as many labeled
    regions (``center``, a pseudo-random subset by id hash), so memory never grows with the
    pool. ``pick`` chooses among the rows; row fields are ``feat`` and whatever else the
    strategy's ``region_stats`` put in the group.
    """

    needs_features = True
    uses_centers = False

    def __init__(self, max_candidates: int = 50_000, block: int = 4096) -> None:
        super().__init__(None)
        if max_candidates < 1:
            raise ValueError(f"max_candidates={max_candidates} must be >= 1")
        self.max_candidates, self.block = max_candidates, block

    def embed(self, batch: BatchOutputs) -> torch.Tensor:
        raise NotImplementedError

    def region_stats(self, batch: BatchOutputs) -> RegionStats:
        ent = region_reduce(S.entropy(batch.logits), batch.regions, batch.num_regions, "mean")
        feat = self.embed(batch)
        key = torch.where(batch.labeled, torch.full_like(ent, -math.inf), ent)
        out = RegionStats(score=ent, cand=Rows(key, {"feat": feat}))
        if self.uses_centers:  # a fixed pseudo-random subset of the labeled regions
            h = hash_key(batch.ids)
            out.center = Rows(torch.where(batch.labeled, h, torch.full_like(h, -math.inf)))
            out.center.fields["feat"] = feat
        return out

    def rows(self, stats: PoolStats) -> tuple[torch.Tensor, Stats, torch.Tensor]:
        """The kept rows: (M,) global ids, their fields (``feat``, ...), (M,) bool labeled
        (centers) — candidates first, then centers."""
        groups = [stats.cand] + ([stats.center] if self.uses_centers else [])
        kept = [g.take(g.known_ids() >= 0) for g in groups if g is not None]
        rows = Rows.cat(kept)
        is_center = [torch.full_like(g.key, i > 0, dtype=torch.bool) for i, g in enumerate(kept)]
        return rows.known_ids(), rows.fields, torch.cat(is_center)

    def select(
        self,
        scores: torch.Tensor,
        stats: PoolStats,
        ctx: SelectionContext,
    ) -> Selection:
        ids, fields, lab = self.rows(stats)
        c = ctx.costs.to(ids.device)[ids]
        cand_cost = float(c[~lab].sum())
        if cand_cost < ctx.budget:
            raise ValueError(
                f"{self.name}: the {int((~lab).sum())} candidate regions cost {cand_cost:g} "
                f"clicks, less than the budget {ctx.budget:g}; raise "
                "active.strategy_params.max_candidates"
            )
        picked = self.pick(fields, ctx.rows(c, lab))
        extras = dict(picked.extras)
        if "free_rows" in extras:  # row positions -> global ids
            extras["free_ids"] = ids[torch.from_numpy(extras.pop("free_rows"))].cpu().numpy()
        return Selection(ids[picked.ids].cpu(), extras)

    def pick(
        self,
        fields: Stats,
        ctx: SelectionContext,
    ) -> Selection:
        """Choose rows: a Selection of row positions (extras: ``free_rows`` positions are
        turned into ``free_ids``)."""
        raise NotImplementedError
