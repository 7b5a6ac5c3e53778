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
    if n and costs.min() <= 0:
        raise ValueError("every region cost must be > 0")
    if labeled is None:
        ids = torch.arange(n, device=scores.device)
    else:
        ids = (~labeled.to(scores.device)).nonzero().squeeze(1)
    if ids.numel() == 0:
        raise ValueError("the pool is empty: every region is already labeled")
    c = costs[ids]
    pool_cost = float(c.sum(dtype=torch.float64))
    if budget > pool_cost + 1e-9:
        raise ValueError(
            f"budget={budget:g} clicks is larger than the whole unlabeled pool "
            f"({pool_cost:g} clicks)"
        )
    s = scores[ids].float().nan_to_num(nan=float("-inf"))
    # At most budget / min cost regions fit: rank only the top k of them (plus every region
    # tied with the k-th score, so that ties still go to the lower id), not all N.
    k = min(ids.numel(), int(budget // float(c.min())) + 1)
    if k < ids.numel():
        kth = torch.topk(s, k, sorted=False).values.min()
        top = (s >= kth).nonzero().squeeze(1)  # ascending positions = ascending ids
        ids, s, c = ids[top], s[top], c[top]
    order = torch.sort(s, descending=True, stable=True).indices
    spent = c[order].to(torch.float64).cumsum(0)
    return ids[order][spent <= budget + 1e-9]


def power_keys(scores: torch.Tensor, beta: float, generator: torch.Generator) -> torch.Tensor:
    """Stochastic power sampling keys (Kirsch et al., 2023): ranking by
    ``beta * log(score) + Gumbel noise`` and taking the top-k samples k regions without
    replacement with probability proportional to score ** beta (the Gumbel-top-k trick).

    Args:
        scores: (N,) non-negative scores (NaN stays NaN: never preferred).
        beta: exponent (> 0); large beta approaches deterministic top-k.
    """
    if beta <= 0:
        raise ValueError(f"power beta={beta} must be > 0")
    u = torch.rand(scores.shape, generator=generator, dtype=torch.float64).clamp_(1e-12, 1 - 1e-12)
    gumbel = -torch.log(-torch.log(u))
    return beta * torch.log(scores.double().clamp_min(1e-12)) + gumbel.to(scores.device)


def _sq_norms(x: torch.Tensor, block: int) -> torch.Tensor:
    """(N,) squared row norms, in row blocks."""
    out = torch.empty(x.shape[0], device=x.device)
    for s in range(0, x.shape[0], block):
        out[s : s + block] = x[s : s + block].float().pow(2).sum(1)
    return out


def _sq_dist_to(x: torch.Tensor, c: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    """(N,) squared distance of every row of x (N, D) to one point c (D,):
    |x|^2 - 2 x.c + |c|^2, one matrix-vector product (no (N, D) temporary)."""
    c = c.float()
    return (sq_norms - 2 * torch.mv(x.float(), c) + c.dot(c)).clamp_min_(0)


def _min_sq_dist(x: torch.Tensor, centers: torch.Tensor, block: int) -> torch.Tensor:
    """(N,) squared distance of each row of x to its nearest center; memory O(block^2)."""
    out = torch.full((x.shape[0],), float("inf"), device=x.device)
    for s in range(0, x.shape[0], block):
        xs = x[s : s + block].float()
        for t in range(0, centers.shape[0], block):
            d = torch.cdist(xs, centers[t : t + block].float()).pow_(2).amin(1)
            out[s : s + block] = torch.minimum(out[s : s + block], d)
    return out


def _greedy_budget(costs: torch.Tensor, budget: float, labeled: torch.Tensor) -> None:
    if budget <= 0:
        raise ValueError(f"budget={budget} must be > 0")
    pool = float(costs[~labeled].sum(dtype=torch.float64))
    if pool <= 0:
        raise ValueError("the pool is empty: every region is already labeled")
    if budget > pool + 1e-9:
        raise ValueError(
            f"budget={budget:g} clicks is larger than the whole unlabeled pool ({pool:g} clicks)"
        )


def kcenter_greedy(
    features: torch.Tensor,
    costs: torch.Tensor,
    budget: float,
    labeled: torch.Tensor,
    block: int = 4096,
) -> torch.Tensor:
    """Core-set k-center greedy (Sener & Savarese, 2018) under a click budget.

    Repeatedly takes the unlabeled point farthest from every center (labeled points and
    points taken so far) until the next one does not fit the budget. Distances are kept as
    one running (N,) minimum, updated per pick in row blocks: memory O(N + block x D),
    never N x N.

    Args:
        features: (N, D).
        costs: (N,) > 0.
        labeled: (N,) bool, the initial centers (never selected).
    Returns:
        (K,) long ids in pick order (ties: lower id).
    """
    _greedy_budget(costs, budget, labeled)
    n = features.shape[0]
    features = features.float()
    norms = _sq_norms(features, block)
    if labeled.any():
        min_d = _min_sq_dist(features, features[labeled], block)
    else:  # no center yet: the first pick is the point farthest from the mean
        min_d = _sq_dist_to(features, features.mean(0), norms)
    min_d[labeled] = -1.0
    picks: list[int] = []
    spent = 0.0
    for step in range(n):
        i = int(torch.argmax(min_d))  # first maximum: lower id on ties
        if min_d[i] < 0 or spent + float(costs[i]) > budget + 1e-9:
            break
        picks.append(i)
        spent += float(costs[i])
        d = _sq_dist_to(features, features[i], norms)
        # the distance to the mean only chose the first center; it is not a center
        min_d = d if step == 0 and not labeled.any() else torch.minimum(min_d, d)
        min_d[picks] = -1.0
        min_d[labeled] = -1.0
    return torch.tensor(picks, dtype=torch.long, device=features.device)


def kmeanspp_select(
    embeddings: torch.Tensor,
    costs: torch.Tensor,
    budget: float,
    labeled: torch.Tensor,
    generator: torch.Generator,
    block: int = 4096,
) -> torch.Tensor:
    """BADGE (Ash et al., 2020): k-means++ seeding on gradient embeddings under a budget.

    The first pick is the embedding of largest norm; each next pick is sampled with
    probability proportional to its squared distance to the nearest pick. One running
    (N,) minimum, updated in blocks: memory O(N + block x D).

    Returns:
        (K,) long ids in pick order.
    """
    _greedy_budget(costs, budget, labeled)
    embeddings = embeddings.float()
    sq_norms = _sq_norms(embeddings, block)
    first = int(torch.argmax(torch.where(labeled, torch.full_like(sq_norms, -1.0), sq_norms)))
    picks, spent = [first], float(costs[first])
    if spent > budget + 1e-9:
        return torch.zeros(0, dtype=torch.long, device=embeddings.device)
    min_d = _sq_dist_to(embeddings, embeddings[first], sq_norms)
    taken = labeled.clone()
    taken[first] = True
    while True:
        weights = torch.where(taken, torch.zeros_like(min_d), min_d.clamp_min(0)).double().cpu()
        if weights.sum() <= 0:  # all remaining points coincide with picks: take by id
            rest = (~taken).nonzero().squeeze(1)
            if rest.numel() == 0:
                break
            i = int(rest[0])
        else:
            i = int(torch.multinomial(weights, 1, generator=generator))
        if spent + float(costs[i]) > budget + 1e-9:
            break
        picks.append(i)
        spent += float(costs[i])
        taken[i] = True
        min_d = torch.minimum(min_d, _sq_dist_to(embeddings, embeddings[i], sq_norms))
    return torch.tensor(picks, dtype=torch.long, device=embeddings.device)


def _rbf_row_means(
    x: torch.Tensor, sq_norms: torch.Tensor, gamma: float, block: int
) -> torch.Tensor:
    """(N,) mean over j of exp(-gamma ||x_i - x_j||^2), in (block x block) kernel tiles."""
    N = x.shape[0]
    out = torch.zeros(N, device=x.device)
    for s in range(0, N, block):
        xs, ns = x[s : s + block].float(), sq_norms[s : s + block]
        for t in range(0, N, block):
            d = ns[:, None] + sq_norms[None, t : t + block] - 2 * xs @ x[t : t + block].float().T
            out[s : s + block] += torch.exp(-gamma * d.clamp_min_(0)).sum(1)
    return out / N


def lamda_select(
    features: torch.Tensor,
    free: torch.Tensor,
    labeled: torch.Tensor,
    budget: int,
    max_free: int,
    gamma: float | None = None,
    block: int = 2048,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LAMDA's greedy MMD-critic selection (Hwang et al., ECCV 2022; docs/methods.md).

    With A the samples picked so far this round, pick
    c* = argmax_{c not in A} (2/N) sum_j K_cj - (2 sum_{s in A} K_sc + K_cc) / (|A| + 1)
    (RBF kernel K = exp(-gamma ||f_i - f_j||^2); ties: lowest index). A pick outside the
    free set is a query (costs budget); a pick in the free set (confident samples and every
    labeled one) is a free pick while there are at most ``max_free``; past that, the oldest
    free pick that is not labeled becomes a query (a labeled sample is never queried
    again: the fix vs the public code). Stops at ``budget`` queries.

    Memory: the kernel's row means in tiles and one running (N,) vector
    sum_{s in A} K[s, :] updated per pick (O(N D) each); never an N x N matrix.

    Args:
        features: (N, D) embeddings (any device).
        free: (N,) bool confident samples (p1 - p2 > 0.8).
        labeled: (N,) bool labeled in earlier rounds (free, never queried).
        budget: queries to return.
        max_free: cap on free picks (2 x round x budget in the paper).
        gamma: kernel width; default 1 / D.
        block: tile side of the kernel-mean computation.
    Returns:
        (queries (budget,) long, in pick order; free picks (F,) long, in pick order).
    """
    N, D = features.shape
    dev = features.device
    free, labeled = free.to(dev).bool(), labeled.to(dev).bool()
    if free.shape != (N,) or labeled.shape != (N,):
        raise ValueError(f"free and labeled must have shape ({N},)")
    if budget > int((~labeled).sum()):
        raise ValueError(f"budget={budget} exceeds the {int((~labeled).sum())} unlabeled samples")
    gamma = 1.0 / D if gamma is None else float(gamma)
    queries, free_picks = _greedy_mmd(
        features, free | labeled, labeled, budget, max_free, gamma, block
    )
    return (
        torch.tensor(queries, dtype=torch.long, device=dev),
        torch.tensor(free_picks, dtype=torch.long, device=dev),
    )


def _greedy_mmd(
    features: torch.Tensor,
    free: torch.Tensor,
    labeled: torch.Tensor,
    budget: int,
    max_free: int,
    gamma: float,
    block: int,
) -> tuple[list[int], list[int]]:
    """The greedy loop of ``lamda_select``: (queries, free picks) in pick order."""
    N = features.shape[0]
    norms = _sq_norms(features, block)
    attract = 2 * _rbf_row_means(features, norms, gamma, block)  # (2/N) sum_j K_cj
    running = torch.zeros(N, device=features.device)  # sum_{s in A} K[s, c]
    picked = torch.zeros(N, dtype=torch.bool, device=features.device)
    queries: list[int] = []
    free_picks: list[int] = []
    free_cpu, labeled_cpu = free.cpu(), labeled.cpu()
    a = 0
    while len(queries) < budget and a < N:
        obj = attract - (2 * running + 1.0) / (a + 1)  # K_cc = 1
        obj = obj.masked_fill(picked, float("-inf"))
        c = int(torch.argmax(obj))  # first maximum: lowest index
        picked[c] = True
        a += 1
        running += torch.exp(-gamma * _sq_dist_to(features, features[c], norms))
        if not free_cpu[c]:
            queries.append(c)
            continue
        free_picks.append(c)
        if len(free_picks) > max_free:
            _free_to_query(free_picks, queries, labeled_cpu)
    while len(queries) < budget:  # every sample picked: the oldest unlabeled free picks
        _free_to_query(free_picks, queries, labeled_cpu)
    return queries, free_picks


def _free_to_query(free_picks: list[int], queries: list[int], labeled: torch.Tensor) -> None:
    """Turn the oldest free pick that is not labeled into a query (if there is one)."""
    for k, j in enumerate(free_picks):
        if not labeled[j]:
            queries.append(free_picks.pop(k))
            return


def _nearest_center(x: torch.Tensor, centers: torch.Tensor, block: int) -> torch.Tensor:
    """(N,) index of the nearest center of each row, in row blocks."""
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], block):
        out[s : s + block] = torch.cdist(x[s : s + block].float(), centers.float()).argmin(1)
    return out


def weighted_kmeans_select(
    embeddings: torch.Tensor,
    weights: torch.Tensor,
    costs: torch.Tensor,
    budget: float,
    labeled: torch.Tensor,
    generator: torch.Generator,
    iters: int = 10,
    block: int = 4096,
) -> torch.Tensor:
    """CLUE (Prabhu et al., 2021): weighted k-means of the unlabeled embeddings (weights =
    uncertainty), K = the queries the budget affords at the cheapest cost; k-means++
    seeding (weighted), ``iters`` Lloyd steps; then the unlabeled sample nearest to each
    centroid (unique; centroids of larger weight mass first) while the budget allows.

    Returns:
        (K,) long ids.
    """
    free = ~labeled
    if not free.any():
        return torch.zeros(0, dtype=torch.long, device=embeddings.device)
    idx = free.nonzero().squeeze(1)
    x, w = embeddings[idx].float(), weights[idx].float().clamp_min(1e-12)
    k = min(int(budget // float(costs[idx].min())), idx.numel())
    if k < 1:
        return torch.zeros(0, dtype=torch.long, device=embeddings.device)
    sq = _sq_norms(x, block)
    first = int(torch.multinomial(w.double().cpu(), 1, generator=generator))
    centers = [first]
    min_d = _sq_dist_to(x, x[first], sq)
    for _ in range(k - 1):  # weighted k-means++ seeding
        p = (w * min_d).double().cpu()
        i = int(torch.multinomial(p, 1, generator=generator)) if p.sum() > 0 else int(p.argmin())
        centers.append(i)
        min_d = torch.minimum(min_d, _sq_dist_to(x, x[i], sq))
    c = x[centers].clone()
    for _ in range(iters):
        assign = _nearest_center(x, c, block)
        mass = torch.zeros(k, device=x.device).index_add_(0, assign, w)
        sums = torch.zeros_like(c).index_add_(0, assign, x * w[:, None])
        filled = mass > 0
        c[filled] = sums[filled] / mass[filled, None]
    assign = _nearest_center(x, c, block)
    mass = torch.zeros(k, device=x.device).index_add_(0, assign, w)
    picks: list[int] = []
    taken = torch.zeros(idx.numel(), dtype=torch.bool, device=x.device)
    spent = 0.0
    for j in torch.argsort(mass, descending=True, stable=True).tolist():
        d = _sq_dist_to(x, c[j], sq).masked_fill(taken, float("inf"))
        i = int(d.argmin())
        if taken[i] or spent + float(costs[idx[i]]) > budget + 1e-9:
            continue
        taken[i] = True
        picks.append(int(idx[i]))
        spent += float(costs[idx[i]])
    return torch.tensor(picks, dtype=torch.long, device=embeddings.device)
