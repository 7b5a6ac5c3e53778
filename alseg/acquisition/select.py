"""Selection under a click budget over flat tensors of (millions of) regions."""

from __future__ import annotations

import torch


def budgeted_topk(
    scores: torch.Tensor,
    costs: torch.Tensor,
    budget: float,
    labeled: torch.Tensor | None = None,
) -> torch.Tensor:
    """Walk regions by descending score and take them while the cumulative cost fits.

    Args:
        scores: (N,) float, larger = more informative; NaN counts as -inf.
        costs: (N,) float > 0, click cost of each region.
        budget: clicks to spend (> 0).
        labeled: (N,) bool, regions that can never be selected again.
    Returns:
        (K,) long global ids in selection order. Ties are broken by lower id first
        (a stable sort over ids in ascending order), so selections are deterministic.
    Raises:
        ValueError: budget <= 0, no unlabeled region, or budget larger than the total
            cost of the unlabeled pool.
    """
    n = scores.numel()
    if costs.shape != scores.shape or scores.dim() != 1:
        raise ValueError(
            f"scores {tuple(scores.shape)} and costs {tuple(costs.shape)} must be equal (N,)"
        )
    if budget <= 0:
        raise ValueError(f"budget={budget} must be > 0")
    if (costs <= 0).any():
        raise ValueError("every region cost must be > 0")
    candidates = torch.ones(n, dtype=torch.bool, device=scores.device)
    if labeled is not None:
        candidates &= ~labeled.to(scores.device)
    ids = candidates.nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ValueError("the pool is empty: every region is already labeled")
    pool_cost = float(costs[ids].sum(dtype=torch.float64))
    if budget > pool_cost + 1e-9:
        raise ValueError(
            f"budget={budget:g} clicks is larger than the whole unlabeled pool "
            f"({pool_cost:g} clicks)"
        )
    s = scores[ids].float().nan_to_num(nan=float("-inf"))
    order = torch.sort(s, descending=True, stable=True).indices
    ranked = ids[order]
    spent = costs[ranked].to(torch.float64).cumsum(0)
    return ranked[spent <= budget + 1e-9]
