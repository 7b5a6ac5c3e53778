"""The pure selection step: pool statistics -> scores -> budgeted selection -> answers.

The round loop calls it on rank 0 with the statistics that every rank holds after the
scoring passes, and broadcasts its result.
"""

from __future__ import annotations

import numpy as np
import torch

from alseg.acquisition.base import PoolStats, Selection, SelectionContext, Strategy
from alseg.data.labels import Annotations
from alseg.data.oracle import SimulatedOracle


def decide(
    strategy: Strategy,
    stats: PoolStats,
    oracle: SimulatedOracle,
    labeled: np.ndarray,
    budget: float,
    generator: torch.Generator,
    round_index: int,
) -> tuple[Annotations, Selection]:
    """Pure selection step: region statistics -> scores -> budgeted selection -> answers."""
    lab = torch.from_numpy(labeled)
    scores = strategy.scores(stats, lab, generator).float().cpu()
    costs = torch.from_numpy(oracle.query_costs(np.arange(lab.numel())))
    ctx = SelectionContext(costs, lab, budget, generator, round_index)
    selection = strategy.select(scores, stats, ctx)
    ids = selection.ids.cpu()
    if stats.root is not None:  # merged regions: one query labels all base regions of its root
        root = stats.root.cpu().numpy()
        ann = oracle.annotate_merged(ids.numpy(), root, scores[ids].double().numpy())
        rows = torch.from_numpy(ann.region_ids)
    else:
        ann = oracle.annotate(ids.numpy(), scores[ids].double().numpy())
        rows = ids
    if stats.pred is not None:
        ann.predicted = stats.pred.cpu()[rows].numpy()
    return ann, selection
