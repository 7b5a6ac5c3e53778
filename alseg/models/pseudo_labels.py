"""Stage-2 pseudo labels of MulActSeg (docs/methods.md): prototypes, intra-region
localisation, median thresholds and label expansion to neighbouring regions, for one
image (the prediction pass that runs it over the labeled images is
``alseg.extensions.stage2``)."""

from __future__ import annotations

import torch

# 8-neighbourhood shifts: a pixel next to region s (3x3 dilation of s) may take its labels
_SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]


def _group_lower_median(
    values: torch.Tensor, groups: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """(G,) lower median of ``values`` (P,) per group id (P,) in [0, G); NaN for empty groups."""
    out = torch.full((num_groups,), float("nan"), device=values.device)
    if values.numel() == 0:
        return out
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(groups[order], stable=True)]  # by group, then by value
    counts = torch.bincount(groups, minlength=num_groups)
    starts = torch.cumsum(counts, 0) - counts
    has = counts > 0
    mid = starts[has] + (counts[has] - 1) // 2
    out[has] = values[order[mid]]
    return out


def _shifted(regions: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """regions[y + dy, x + dx], -1 outside the image."""
    H, W = regions.shape
    out = torch.full_like(regions, -1)
    ys, yd = slice(max(0, -dy), H - max(0, dy)), slice(max(0, dy), H - max(0, -dy))
    xs, xd = slice(max(0, -dx), W - max(0, dx)), slice(max(0, dx), W - max(0, -dx))
    out[ys, xs] = regions[yd, xd]
    return out


def region_neighbours(regions: torch.Tensor) -> torch.Tensor:
    """(E, 2) long pairs (s, u): region u meets the 3x3 dilation of region s (u = s
    included, 8-neighbourhood, both directions); sorted."""
    r = regions.long()
    n = int(r.max()) + 1 if r.numel() else 1
    keys = [torch.arange(n, device=r.device) * (n + 1)]  # (s, s)
    for dy, dx in _SHIFTS:
        q = _shifted(r, dy, dx)
        touch = (q >= 0) & (q != r)
        keys.append(r[touch] * n + q[touch])
    key = torch.unique(torch.cat(keys))
    return torch.stack([key // n, key % n], 1)


@torch.no_grad()
def propagate_pseudo_labels(
    features: torch.Tensor,
    probs: torch.Tensor,
    regions: torch.Tensor,
    region_classes: torch.Tensor,
    labeled: torch.Tensor,
    ignore_index: int = 255,
    block: int = 16384,
) -> torch.Tensor:
    """Pseudo labels of one image from its multi-class region labels (as the official
    MulActSeg code).

    1. Prototype of (region s, class c in Y_s): the feature of the pixel of s with the
       largest p_c (first such pixel on ties).
    2. Each pixel of a labeled region takes the class of its most similar prototype of
       its region (cosine: features are L2-normalised).
    3. Threshold of a prototype: the (lower) median similarity of the pixels of s assigned
       to it (a prototype no pixel chose never passes).
    4. Expansion: every pixel of the regions that meet the 3x3 dilation of s (whole
       neighbouring regions) takes the class of s's most similar prototype if any of s's
       prototypes is more similar to it than that prototype's threshold. Labeled regions
       are visited by increasing id and a later one overwrites an earlier one. Intra-region
       labels (2.) are written last and win.

    Args:
        features: (D, H, W) L2-normalised features.
        probs: (C, H, W) probabilities of the classes a prototype may have (with the void
            output when answers carry a void bit: a void prototype gives label C).
        regions: (H, W) long region ids in [0, R).
        region_classes: (R, C) bool answers.
        labeled: (R,) bool.
    Returns (H, W) long pseudo labels, ``ignore_index`` where unassigned.
    """
    (D, H, W), C, R = features.shape, probs.shape[0], region_classes.shape[0]
    dev = features.device
    f = features.reshape(D, -1).T.float().contiguous()  # (P, D), rows gathered below
    r = regions.reshape(-1).long().to(dev)  # (P,)
    pairs = region_classes[:, :C].to(dev) & labeled.to(dev)[:, None]  # (R, C) prototypes
    out = torch.full((r.numel(),), ignore_index, dtype=torch.long, device=dev)
    if not pairs.any():
        return out.view(H, W)
    proto = _prototypes(f, probs.reshape(C, -1).T.float(), r, R)  # 1.

    def sims(pixels: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        return _similarities(f, proto, pairs, pixels, owners, block)

    # 2. intra-region localisation
    inside = pairs[r].any(1).nonzero().squeeze(1)  # pixels of labeled regions
    s_own, c_own = sims(inside, r[inside]).max(1)
    # 3. thresholds: median similarity of the pixels assigned to each prototype
    thr = _group_lower_median(s_own, r[inside] * C + c_own, R * C).view(R, C)
    # 4. expansion to whole neighbouring regions
    pixels, owners = _neighbour_pixels(regions.to(dev), r, pairs.any(1))
    if pixels.numel():
        sim = sims(pixels, owners)
        valid = (sim > thr[owners]).any(1)  # NaN thresholds (no pixel chose it) never pass
        _write_last_owner(out, pixels[valid], owners[valid], sim[valid].argmax(1))
    out[inside] = c_own  # intra-region labels win
    return out.view(H, W)


def _similarities(
    f: torch.Tensor,
    proto: torch.Tensor,
    pairs: torch.Tensor,
    pixels: torch.Tensor,
    owners: torch.Tensor,
    block: int,
) -> torch.Tensor:
    """(K, C) similarity of pixels to the prototypes of region ``owners``; -inf where the
    pair is no prototype. Only the (pixel, prototype) pairs that exist are computed (an
    answer names ~2 of C classes), in blocks of ``block`` pixels."""
    res = torch.full((pixels.numel(), pairs.shape[1]), float("-inf"), device=f.device)
    for s in range(0, pixels.numel(), block):
        px, ow = pixels[s : s + block], owners[s : s + block]
        k, c = pairs[ow].nonzero(as_tuple=True)
        res[s + k, c] = (f[px[k]] * proto[ow[k], c]).sum(1)
    return res


def _write_last_owner(
    out: torch.Tensor, pixels: torch.Tensor, owners: torch.Tensor, label: torch.Tensor
) -> None:
    """``out[pixel] = label`` of the highest-id region that expanded into each pixel."""
    last = torch.full((out.numel(),), -1, dtype=torch.long, device=out.device)
    last = last.scatter_reduce(0, pixels, owners, "amax")  # the last labeled region
    won = owners == last[pixels]
    out[pixels[won]] = label[won]


def _neighbour_pixels(
    regions: torch.Tensor, r: torch.Tensor, is_labeled: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (pixel of an unlabeled region, labeled region s) with the pixel's region
    meeting s's 3x3 dilation: (K,) flat pixel indices and (K,) owners s, s ascending."""
    nb = region_neighbours(regions)
    # labeled neighbours are left out: their own (intra-region) labels win anyway
    nb = nb[is_labeled[nb[:, 0]] & ~is_labeled[nb[:, 1]]]
    order = torch.argsort(r, stable=True)  # pixels grouped by region
    counts = torch.bincount(r, minlength=is_labeled.numel())
    starts = torch.cumsum(counts, 0) - counts
    reps = counts[nb[:, 1]]
    owners = torch.repeat_interleave(nb[:, 0], reps)
    first = torch.repeat_interleave(starts[nb[:, 1]], reps)
    within = torch.arange(int(reps.sum()), device=r.device) - torch.repeat_interleave(
        torch.cumsum(reps, 0) - reps, reps
    )
    return order[first + within], owners


def _prototypes(f: torch.Tensor, p: torch.Tensor, r: torch.Tensor, R: int) -> torch.Tensor:
    """(R, C, D) prototype of each (region, class): the feature of the first pixel of the
    region with the largest p_c. ``f`` (P, D), ``p`` (P, C), ``r`` (P,) region ids."""
    P, C = p.shape
    idx = r[:, None].expand(-1, C)
    best = torch.full((R, C), float("-inf"), device=p.device).scatter_reduce(0, idx, p, "amax")
    pos = torch.where(
        p == best[r], torch.arange(P, device=p.device)[:, None], torch.full_like(idx, P)
    )
    arg = torch.full((R, C), P, device=p.device).scatter_reduce(0, idx, pos, "amin")
    return f[arg.clamp(max=P - 1)]  # rows of absent pairs are masked by the caller
