"""Pixel pairs within a radius, the pixels on the segment between them, and what a
boundary map B (N, H, W) in [0, 1] says about each pair (IRN, Ahn et al. CVPR 2019,
``misc/indexing.py``):

* ``PathIndex(radius)`` lists the displacements d = (dy, dx) of one half-plane (each
  unordered pair once): (0, x) for 0 < x < r and (y, x) for 0 < y < r, |x| < r, with
  x^2 + y^2 < r^2; the path of d is every offset of the box between 0 and d whose distance
  to the line through d is < 1, source and destination included.
* ``path_max(B)``: for every source pixel p and displacement d with p + d inside the
  image, the maximum of B on the path (N, K, H, W) — one gather and one max over the path
  axis, no loop over pairs. The affinity of the pair is 1 - that maximum.
* ``boundary_mil_loss``: the multiple-instance loss of "Learning to detect semantic
  boundaries with image-level class labels" (Kim, Hwang, Kwak, IJCV 2022). A pair of
  confident pixels with different labels is a positive bag — at least one pixel on the
  segment is a boundary: -log(max B); a pair with the same label is a negative bag — none
  is: -log(1 - max B). It is IRN's affinity loss with a = 1 - max B.
* ``random_walk``: IRN's propagation of CAMs with transition probabilities from the
  affinities a^beta.

IRN works on a grid of stride 4 (its boundary map is a stride-4 output): training pairs
within radius 10 and walks within radius 5 of that grid, 40 and 20 pixels of the image.
``on_grid`` and ``strided_walk`` give the same at any ``stride``: B max-pooled to the grid
(a boundary anywhere in a cell stops a path through it), labels sampled at the cells,
CAMs averaged, the walked scores upsampled (bilinear) back, as IRN's ``rw_up``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class PathIndex:
    """Displacements within ``radius`` and the offsets on each one's path.

    Attributes:
        directions: (K, 2) long, the displacements (dy, dx).
        offsets: (K, L, 2) long, the path offsets of each displacement, padded to the
            longest path by repeating its destination (a repeat does not change a max).
    """

    def __init__(self, radius: int = 5) -> None:
        if radius < 2:
            raise ValueError(f"radius must be >= 2 (pairs of neighbours), got {radius}")
        self.radius = radius
        dirs = [(0, x) for x in range(1, radius)]
        dirs += [
            (y, x)
            for y in range(1, radius)
            for x in range(-radius + 1, radius)
            if x * x + y * y < radius * radius
        ]
        paths = [self._path(dy, dx) for dy, dx in dirs]
        longest = max(len(p) for p in paths)
        self.directions = torch.tensor(dirs, dtype=torch.long)
        self.offsets = torch.tensor(
            [p + [p[-1]] * (longest - len(p)) for p in paths], dtype=torch.long
        )
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    @staticmethod
    def _path(dy: int, dx: int) -> list[tuple[int, int]]:
        """Offsets of the box from 0 to (dy, dx) within distance 1 of the line, from the
        source to the destination."""
        norm = dy * dy + dx * dx
        pts = [
            (y, x)
            for y in range(min(0, dy), max(0, dy) + 1)
            for x in range(min(0, dx), max(0, dx) + 1)
            if (dy * x - dx * y) ** 2 < norm
        ]
        return sorted(pts, key=lambda p: abs(p[0]) + abs(p[1]))

    def gather_index(self, H: int, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, L, H, W) flat pixel index of each path point of each source pixel (clamped
        inside the image), and (K, H, W) bool: the destination is inside the image."""
        key = (H, W)
        if key not in self._cache:
            ys = torch.arange(H)[None, None, :, None]
            xs = torch.arange(W)[None, None, None, :]
            py = ys + self.offsets[..., 0, None, None]
            px = xs + self.offsets[..., 1, None, None]
            dy, dx = self.directions[:, 0, None, None], self.directions[:, 1, None, None]
            y, x = torch.arange(H)[None, :, None], torch.arange(W)[None, None, :]
            valid = (y + dy < H) & (x + dx >= 0) & (x + dx < W)
            flat = py.clamp(0, H - 1) * W + px.clamp(0, W - 1)
            self._cache[key] = (flat, valid)
        return self._cache[key]

    def path_max(self, boundary: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K, H, W) the maximum of ``boundary`` (N, H, W) on each pair's path, and the
        (K, H, W) validity of the pairs."""
        N, H, W = boundary.shape
        flat, valid = self.gather_index(H, W)
        flat, valid = flat.to(boundary.device), valid.to(boundary.device)
        vals = boundary.reshape(N, H * W)[:, flat.reshape(-1)].view(N, *flat.shape)
        return vals.amax(2), valid

    def training_sources(self, H: int, W: int) -> torch.Tensor:
        """(H, W) bool: IRN's training sources, the pixels every displacement of which stays
        inside the image — rows below H - (r - 1), columns r - 1 .. W - r
        (``misc/indexing.py``: ``get_path_indices`` crops the radius floor from the bottom,
        the left and the right)."""
        rf = self.radius - 1
        out = torch.zeros(H, W, dtype=torch.bool)
        out[: max(H - rf, 0), rf : max(W - rf, rf)] = True
        return out

    def pair_labels(
        self, labels: torch.Tensor, ignore_index: int = 255
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For labels (N, H, W): (N, K, H, W) bool "same label" and "different label" of
        the training pairs (IRN's sources, ``training_sources``) whose two pixels are both
        labeled."""
        N, H, W = labels.shape
        flat, valid = self.gather_index(H, W)
        dst_index = flat[:, -1].to(labels.device)  # the padded last offset is the destination
        src = labels[:, None]
        dst = labels.reshape(N, H * W)[:, dst_index.reshape(-1)].view(N, *dst_index.shape)
        sources = self.training_sources(H, W).to(labels.device)
        both = valid.to(labels.device) & sources & (src != ignore_index) & (dst != ignore_index)
        return both & (src == dst), both & (src != dst)


def on_grid(
    boundary: torch.Tensor, labels: torch.Tensor | None, stride: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``boundary`` (N, H, W) max-pooled and ``labels`` (N, H, W) sampled (nearest) to the
    grid of every ``stride``-th pixel, ceil(H / stride) x ceil(W / stride); unchanged at
    stride 1."""
    if stride == 1:
        return boundary, labels
    B = F.max_pool2d(boundary[:, None], stride, stride, ceil_mode=True)[:, 0]
    if labels is None:
        return B, None
    lab = F.interpolate(labels[:, None].float(), size=B.shape[-2:], mode="nearest")
    return B, lab[:, 0].long()


def strided_walk(
    scores: torch.Tensor,
    boundary: torch.Tensor,
    index: PathIndex,
    beta: float,
    steps: int,
    stride: int = 1,
) -> torch.Tensor:
    """``random_walk`` on the grid of ``stride``: the scores (C, H, W) averaged and the
    boundary (H, W) max-pooled to it, the walked scores upsampled (bilinear) to (H, W)."""
    if stride == 1:
        return random_walk(scores, boundary, index, beta, steps)
    H, W = scores.shape[-2:]
    B, _ = on_grid(boundary[None], None, stride)
    x = F.avg_pool2d(scores[None], stride, stride, ceil_mode=True, count_include_pad=False)[0]
    walked = random_walk(x, B[0], index, beta, steps)
    up = F.interpolate(walked[None], scale_factor=stride, mode="bilinear", align_corners=False)
    return up[0, :, :H, :W]


def boundary_mil_loss(
    boundary: torch.Tensor,
    labels: torch.Tensor,
    index: PathIndex,
    ignore_index: int = 255,
    eps: float = 1e-5,
    background: bool = False,
) -> torch.Tensor:
    """The boundary MIL loss: (mean over negative bags of -log(1 + eps - max B) + mean
    over positive bags of -log(max B + eps)) / 2, as IRN's (pos + neg) / 2. With a
    background class (class 0, ``background``) the negative (same-label) term is IRN's
    mean of two halves: the background pairs' mean and the object pairs' mean. A kind of
    bag absent from the batch contributes 0.

    Args:
        boundary: (N, H, W) boundary probabilities.
        labels: (N, H, W) confident labels, ``ignore_index`` elsewhere.
    """
    peak, _ = index.path_max(boundary)
    same, diff = index.pair_labels(labels, ignore_index)
    neg = -torch.log(1.0 + eps - peak)
    pos = -torch.log(peak + eps)

    def mean(loss: torch.Tensor, bags: torch.Tensor) -> torch.Tensor:
        return (loss * bags).sum() / bags.sum().clamp(min=1)

    if background:
        bg = same & (labels == 0)[:, None]  # a same-label pair's source is background
        loss_neg = (mean(neg, bg) + mean(neg, same & ~bg)) / 2
    else:
        loss_neg = mean(neg, same)
    return (loss_neg + mean(pos, diff)) / 2


def random_walk(
    scores: torch.Tensor,
    boundary: torch.Tensor,
    index: PathIndex,
    beta: float = 10.0,
    steps: int = 256,
) -> torch.Tensor:
    """IRN's propagation of one image's scores (C, H, W) along a boundary map (H, W).

    Affinities a_ij = (1 - max B on the path)^beta between the pairs within the radius
    (both directions) and a_ii = 1; T = A with columns normalised to 1; the scores, damped
    by (1 - B), are multiplied by T ``steps`` times (IRN squares T 8 times, i.e. 256
    steps, on a dense matrix; the sparse product here gives the same result without the
    (HW)^2 matrix).
    """
    C, H, W = scores.shape
    peak, valid = index.path_max(boundary[None])
    flat, _ = index.gather_index(H, W)
    src = torch.arange(H * W, device=boundary.device).view(1, H, W).expand_as(valid)
    dst = flat[:, -1].to(boundary.device)
    aff = (1.0 - peak[0]).clamp(min=0) ** beta
    s, d, a = src[valid], dst[valid], aff[valid]
    diag = torch.arange(H * W, device=boundary.device)
    rows = torch.cat([s, d, diag])
    cols = torch.cat([d, s, diag])
    vals = torch.cat([a, a, torch.ones(H * W, device=boundary.device, dtype=aff.dtype)])
    col_sum = torch.zeros(H * W, device=boundary.device, dtype=aff.dtype).index_add_(0, cols, vals)
    # x_j <- sum_i x_i T_ij: a sparse (HW, HW) matrix of T transposed times x^T
    t_T = torch.sparse_coo_tensor(
        torch.stack([cols, rows]), vals / col_sum[cols], (H * W, H * W), check_invariants=False
    ).coalesce()
    x = (scores * (1.0 - boundary)).reshape(C, H * W).T
    for _ in range(steps):
        x = torch.sparse.mm(t_T, x)
    return x.T.reshape(C, H, W)
