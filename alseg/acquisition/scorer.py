"""PoolScorer: streams the pool, reducing every batch to region statistics at once.

Pool outputs are never materialised: for each batch the strategy turns the logits (and
features, when it needs them) into a ``RegionStats`` of per-region tensors on the outputs'
device, and the scorer writes them into flat buffers indexed by global region id
(R_total, ...). Per-image statistics go to (N_images, ...) buffers, and the rows of a
group (``cand``: candidates, ``center``: labeled centers) to bounded top-M buffers.
Memory is O(regions + M x D), whatever the pool's size in pixels.

Under DDP each rank fills the rows of its shard of the pool; ``compute`` sums region and
image buffers over ranks (rows of other ranks are zero) and merges the candidate buffers,
so every rank ends with the same ``PoolStats``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from alseg.acquisition.base import BatchOutputs, PoolStats, RegionStats, Rows, Stats, Strategy
from alseg.acquisition.reduce import region_majority

Reduce = Callable[[torch.Tensor], torch.Tensor]
Gather = Callable[[torch.Tensor], torch.Tensor]  # (...) -> (world, ...)
Broadcast = Callable[[Any], Any]
Shapes = dict[str, tuple[tuple[int, ...], torch.dtype]]  # name -> (shape of a row, dtype)


class PoolScorer:
    """Accumulates a strategy's statistics over a streamed pool.

    Args:
        strategy: provides ``region_stats`` per batch.
        num_regions: (N_images,) regions per pool image (``RegionSet.num_regions``).
        offsets: (N_images + 1,) global id offsets (``RegionSet.offsets``).
        labeled: (R_total,) bool, regions already labeled (default: none).
    """

    def __init__(
        self,
        strategy: Strategy,
        num_regions: np.ndarray,
        offsets: np.ndarray,
        labeled: np.ndarray | None = None,
    ) -> None:
        self.strategy = strategy
        self.num_regions = torch.as_tensor(num_regions, dtype=torch.long)
        self.offsets = torch.as_tensor(offsets, dtype=torch.long)
        self.total = int(self.offsets[-1])
        self.num_images = len(self.num_regions)
        lab = np.zeros(self.total, dtype=bool) if labeled is None else labeled
        if lab.shape != (self.total,):
            raise ValueError(f"labeled has shape {lab.shape}, expected ({self.total},)")
        self.labeled = torch.from_numpy(np.ascontiguousarray(lab))
        self.reset()

    def reset(
        self, pass_index: int = 0, context: Stats | None = None, head_temperature: float = 1.0
    ) -> None:
        """Forget the statistics of the last pass; the next batches belong to pass
        ``pass_index``, whose strategy context (``Strategy.end_pass``) is ``context``, of a
        model whose classifier divides raw scores by ``head_temperature``."""
        self.pass_index, self.context = pass_index, dict(context or {})
        self.head_temperature = head_temperature
        self.regions: Stats = {}  # name -> (R_total, ...)
        self.images: Stats = {}  # name -> (N_images, ...)
        self.scored: torch.Tensor | None = None
        self.image_scored: torch.Tensor | None = None
        self.groups: dict[str, Rows] = {}  # the kept rows of each group, ids set

    @staticmethod
    def _buffer(buffers: Stats, name: str, rows: int, like: torch.Tensor) -> torch.Tensor:
        buf = buffers.get(name)
        if buf is None:
            buf = torch.zeros((rows, *like.shape[1:]), dtype=like.dtype, device=like.device)
            buffers[name] = buf
        return buf

    @torch.no_grad()
    def update(
        self,
        outputs: torch.Tensor | dict[str, torch.Tensor],
        regions: torch.Tensor,
        indices: torch.Tensor,
    ) -> None:
        """Reduce one batch.

        Args:
            outputs: (B, C, H, W[, T]) logits, or ``{"logits": ..., "features": (B, D, h, w)}``.
            regions: (B, H, W) long local region ids of each image.
            indices: (B,) long pool image indices.
        """
        out = outputs if isinstance(outputs, dict) else {"logits": outputs}
        logits = out["logits"]
        device = logits.device
        idx = indices.long().cpu()
        counts = self.num_regions[idx]  # (B,)
        base = torch.cumsum(counts, 0) - counts  # batch-compact id offset of each image
        compact = regions.long().to(device) + base.to(device)[:, None, None]
        n = int(counts.sum())
        # Global id of each batch-compact region: offsets[image] + local id.
        local = torch.arange(n) - torch.repeat_interleave(base, counts)
        gids_cpu = torch.repeat_interleave(self.offsets[idx], counts) + local
        gids = gids_cpu.to(device)
        batch = BatchOutputs(
            logits,
            compact,
            n,
            self.labeled[gids_cpu].to(device),
            gids,
            out.get("features"),
            out.get("domain"),
            out.get("backbone"),
            torch.repeat_interleave(idx, counts).to(device),
            self.pass_index,
            self.context,
            self.head_temperature,
        )
        stats = self.strategy.region_stats(batch)
        if stats.pred is None:  # the model's majority class, for the selection record
            mean_logits = logits.mean(-1) if logits.dim() == 5 else logits
            stats.pred = region_majority(mean_logits.argmax(1), compact, n, logits.shape[1])
        self._store(stats, gids, idx.to(device))

    def _store(self, stats: RegionStats, gids: torch.Tensor, images: torch.Tensor) -> None:
        """Write one batch's statistics into the region, image and group buffers."""
        device = gids.device
        if self.scored is None:
            self.scored = torch.zeros(self.total, dtype=torch.bool, device=device)
            self.image_scored = torch.zeros(self.num_images, dtype=torch.bool, device=device)
        assert self.image_scored is not None
        self.scored[gids] = True
        self.image_scored[images] = True
        for name, value in stats.per_region().items():
            self._buffer(self.regions, name, self.total, value)[gids] = value
        for name, value in stats.images.items():
            self._buffer(self.images, name, self.num_images, value)[images] = value
        for group, rows in stats.groups().items():
            self._merge(group, Rows(rows.key, rows.fields, gids))

    def _merge(self, group: str, rows: Rows) -> None:
        """Keep the ``max_candidates`` rows of largest key of a group (ties: lower id);
        rows with key -inf are dropped. ``rows.ids`` must be set."""
        old = self.groups.get(group)
        if old is not None:
            rows = Rows.cat([old, rows])
        rows = rows.take(rows.key > -torch.inf)
        rows = rows.take(torch.argsort(rows.known_ids(), stable=True))  # ties: not by arrival
        m = self.strategy.max_candidates
        if rows.key.numel() > m:
            top = torch.sort(rows.key, descending=True, stable=True).indices[:m].sort().values
            rows = rows.take(top)
        self.groups[group] = rows

    def _layout(self, broadcast: Broadcast | None) -> dict[str, Shapes]:
        """The row fields of every group (rank 0's, under DDP), with the region and image
        buffers a rank without any batch lacks allocated as zeros."""

        def shapes(tensors: Stats) -> Shapes:
            return {k: (tuple(v.shape[1:]), v.dtype) for k, v in tensors.items()}

        spec = (
            shapes(self.regions),
            shapes(self.images),
            {g: shapes(rows.fields) for g, rows in self.groups.items()},
        )
        if broadcast is not None:  # ranks with an empty shard learn the buffers' layout
            spec = broadcast(spec)
        if self.scored is None:
            if broadcast is None:
                raise RuntimeError(
                    "PoolScorer.compute() called before any update(): the pool was empty"
                )
            self.scored = torch.zeros(self.total, dtype=torch.bool)
            self.image_scored = torch.zeros(self.num_images, dtype=torch.bool)
        device = self.scored.device
        for buffers, layout, rows in (
            (self.regions, spec[0], self.total),
            (self.images, spec[1], self.num_images),
        ):
            for name, (shape, dtype) in layout.items():
                if name not in buffers:
                    buffers[name] = torch.zeros((rows, *shape), dtype=dtype, device=device)
        return spec[2]

    def compute(
        self,
        all_reduce: Reduce | None = None,
        all_gather: Gather | None = None,
        broadcast: Broadcast | None = None,
    ) -> PoolStats:
        """Statistics over the whole pool, combined over ranks.

        Args:
            all_reduce: sums a tensor over ranks (None: one process).
            all_gather: stacks a tensor of every rank on a new first axis.
            broadcast: sends a picklable object from rank 0 to all ranks.
        Returns:
            ``PoolStats``: (R_total, ...) region tensors (float ones NaN where a region was
            not scored) and ``scored``, (N_images, ...) image tensors and ``image_scored``,
            and per group (``cand``, ``center``) ``max_candidates`` rows: ``ids`` (M,) long
            (-1 = empty row), ``key`` (M,) and every row field (M, ...), e.g. ``feat``.
        """
        group_fields = self._layout(broadcast)
        assert self.scored is not None and self.image_scored is not None

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return all_reduce(t) if all_reduce is not None else t

        scored = reduce(self.scored.to(torch.int32)) > 0
        image_scored = reduce(self.image_scored.to(torch.int32)) > 0

        def combined(buffers: Stats, seen: torch.Tensor) -> Stats:
            out = {}
            for name, buf in buffers.items():
                value = reduce(buf)
                if value.is_floating_point():
                    mask = seen.view(-1, *([1] * (value.dim() - 1)))
                    value = torch.where(mask, value, torch.full_like(value, float("nan")))
                out[name] = value
            return out

        groups = {
            g: self._gathered(g, fields, all_gather) for g, fields in group_fields.items() if fields
        }
        return PoolStats.build(
            combined(self.regions, scored),
            scored,
            combined(self.images, image_scored),
            image_scored,
            groups,
        )

    def _gathered(
        self,
        group: str,
        fields: Shapes,
        all_gather: Gather | None,
    ) -> Rows:
        m = self.strategy.max_candidates
        assert self.scored is not None
        device = self.scored.device

        def padded() -> Rows:
            out = Rows(
                torch.full((m,), -torch.inf, device=device),
                {
                    n: torch.zeros((m, *shape), dtype=dt, device=device)
                    for n, (shape, dt) in fields.items()
                },
                torch.full((m,), -1, dtype=torch.long, device=device),
            )
            g = self.groups.get(group)
            if g is not None:
                k = g.key.numel()
                out.key[:k], out.known_ids()[:k] = g.key, g.known_ids()
                for name, value in out.fields.items():
                    value[:k] = g.fields[name]
            return out

        out = padded()
        if all_gather is not None:  # M rows on every rank, merged again
            self.groups.pop(group, None)
            self._merge(group, out.map(lambda t: all_gather(t).flatten(0, 1)))
            out = padded()
        return out
