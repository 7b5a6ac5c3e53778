"""PoolScorer: streams the pool once, reducing every batch to region statistics at once.

Pool outputs are never materialised: for each batch the strategy turns (B, C, H, W)
logits into per-region tensors on the logits' device, and the scorer writes them into
flat buffers indexed by global region id (R_total, ...). Memory is O(regions), whatever
the pool's size in pixels. Under DDP each rank fills the rows of its shard; ``compute``
sums the buffers over ranks (rows of other ranks are zero), so every rank ends with the
same region tensors.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from alseg.acquisition.strategies import Stats, Strategy


class PoolScorer:
    """Accumulates region statistics of a strategy over a streamed pool.

    Args:
        strategy: provides ``region_stats`` per batch.
        num_regions: (N_images,) regions per pool image (``RegionSet.num_regions``).
        offsets: (N_images + 1,) global id offsets (``RegionSet.offsets``).
    """

    def __init__(self, strategy: Strategy, num_regions: np.ndarray, offsets: np.ndarray) -> None:
        self.strategy = strategy
        self.num_regions = torch.as_tensor(num_regions, dtype=torch.long)
        self.offsets = torch.as_tensor(offsets, dtype=torch.long)
        self.total = int(self.offsets[-1])
        self.buffers: Stats = {}
        self.scored: torch.Tensor | None = None

    def reset(self) -> None:
        self.buffers, self.scored = {}, None

    @torch.no_grad()
    def update(self, logits: torch.Tensor, regions: torch.Tensor, indices: torch.Tensor) -> None:
        """Reduce one batch.

        Args:
            logits: (B, C, H, W) model outputs.
            regions: (B, H, W) long local region ids of each image.
            indices: (B,) long pool image indices.
        """
        device = logits.device
        idx = indices.long().cpu()
        counts = self.num_regions[idx]  # (B,)
        base = torch.cumsum(counts, 0) - counts  # batch-compact id offset of each image
        compact = regions.long().to(device) + base.to(device)[:, None, None]
        n = int(counts.sum())
        stats = self.strategy.region_stats(logits, compact, n)
        # Global id of each batch-compact region: offsets[image] + local id.
        local = torch.arange(n) - torch.repeat_interleave(base, counts)
        gids = (torch.repeat_interleave(self.offsets[idx], counts) + local).to(device)
        if self.scored is None:
            self.scored = torch.zeros(self.total, dtype=torch.bool, device=device)
        self.scored[gids] = True
        for name, value in stats.items():
            buf = self.buffers.get(name)
            if buf is None:
                buf = torch.zeros((self.total, *value.shape[1:]), dtype=value.dtype, device=device)
                self.buffers[name] = buf
            buf[gids] = value

    def compute(self, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Stats:
        """Region statistics over the whole pool, summed over ranks by ``all_reduce``.

        Returns a dict of (R_total, ...) tensors plus ``scored`` (R_total,) bool; float
        statistics are NaN where a region was not scored.
        """
        if self.scored is None:
            raise RuntimeError(
                "PoolScorer.compute() called before any update(): the pool was empty"
            )
        scored = self.scored.to(torch.int32)
        if all_reduce is not None:
            scored = all_reduce(scored)
        out: Stats = {"scored": scored > 0}
        for name, buf in self.buffers.items():
            value = all_reduce(buf) if all_reduce is not None else buf
            if value.is_floating_point():
                mask = out["scored"].view(-1, *([1] * (value.dim() - 1)))
                value = torch.where(mask, value, torch.full_like(value, float("nan")))
            out[name] = value
        return out
