"""PoolScorer: streams the pool, reducing every batch to region statistics at once.

Pool outputs are never materialised: for each batch the strategy turns the logits (and
features, when it needs them) into per-region tensors on the outputs' device, and the
scorer writes them into flat buffers indexed by global region id (R_total, ...).
Per-image statistics go to (N_images, ...) buffers, and the rows of a *group* (``cand/``:
candidates, ``center/``: labeled centers; a ``key`` and any number of row fields) to
bounded top-M buffers.
Memory is O(regions + M x D), whatever the pool's size in pixels.

Under DDP each rank fills the rows of its shard of the pool; ``compute`` sums region and
image buffers over ranks (rows of other ranks are zero) and merges the candidate buffers,
so every rank ends with the same tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from alseg.acquisition.base import BatchOutputs, Stats, Strategy
from alseg.acquisition.reduce import region_majority

Reduce = Callable[[torch.Tensor], torch.Tensor]
Gather = Callable[[torch.Tensor], torch.Tensor]  # (...) -> (world, ...)
Broadcast = Callable[[Any], Any]
GROUPS = ("cand", "center")  # bounded feature buffers: candidates, labeled centers


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
        self.buffers: Stats = {}
        self.scored: torch.Tensor | None = None
        self.image_scored: torch.Tensor | None = None
        self.groups: dict[str, Stats] = {}  # group -> {"key", "ids", field: rows, ...}

    def _buffer(self, name: str, rows: int, like: torch.Tensor) -> torch.Tensor:
        buf = self.buffers.get(name)
        if buf is None:
            buf = torch.zeros((rows, *like.shape[1:]), dtype=like.dtype, device=like.device)
            self.buffers[name] = buf
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
        if "pred" not in stats:  # the model's majority class, for the selection record
            mean_logits = logits.mean(-1) if logits.dim() == 5 else logits
            stats["pred"] = region_majority(mean_logits.argmax(1), compact, n, logits.shape[1])

        self._store(stats, gids, idx.to(device))

    def _store(self, stats: Stats, gids: torch.Tensor, images: torch.Tensor) -> None:
        """Write one batch's statistics into the region, image and group buffers."""
        device = gids.device
        if self.scored is None:
            self.scored = torch.zeros(self.total, dtype=torch.bool, device=device)
            self.image_scored = torch.zeros(self.num_images, dtype=torch.bool, device=device)
        assert self.image_scored is not None
        self.scored[gids] = True
        self.image_scored[images] = True
        for name, value in stats.items():
            if name.split("/")[0] in GROUPS:
                continue
            if name.startswith("image/"):
                self._buffer(name, self.num_images, value)[images] = value
            else:
                self._buffer(name, self.total, value)[gids] = value
        for group in GROUPS:
            if f"{group}/key" in stats:
                rows = {
                    k.split("/", 1)[1]: v for k, v in stats.items() if k.startswith(group + "/")
                }
                self._merge(group, {**rows, "ids": gids})

    def _merge(self, group: str, rows: Stats) -> None:
        """Keep the ``max_candidates`` rows of largest ``key`` of a group (ties: lower id);
        rows with key -inf are dropped. ``rows``: ``key``, ``ids`` and the row fields."""
        old = self.groups.get(group)
        if old:
            rows = {name: torch.cat([old[name], value]) for name, value in rows.items()}
        valid = rows["key"] > -torch.inf
        rows = {name: value[valid] for name, value in rows.items()}
        order = torch.argsort(rows["ids"], stable=True)  # ties must not depend on arrival
        rows = {name: value[order] for name, value in rows.items()}
        m = self.strategy.max_candidates
        if rows["key"].numel() > m:
            top = torch.sort(rows["key"], descending=True, stable=True).indices[:m].sort().values
            rows = {name: value[top] for name, value in rows.items()}
        self.groups[group] = rows

    def _layout(self, broadcast: Broadcast | None) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Shape and dtype of every buffer and group field (rank 0's, under DDP), with the
        buffers a rank without any batch lacks allocated as zeros."""
        spec = {k: (tuple(v.shape[1:]), v.dtype) for k, v in self.buffers.items()}
        for group, g in self.groups.items():
            for name, value in g.items():
                if name not in ("key", "ids"):
                    spec[f"{group}/{name}"] = (tuple(value.shape[1:]), value.dtype)
        if broadcast is not None:  # ranks with an empty shard learn the buffers' layout
            spec = broadcast(spec)
        if self.scored is None:
            if broadcast is None:
                raise RuntimeError(
                    "PoolScorer.compute() called before any update(): the pool was empty"
                )
            self.scored = torch.zeros(self.total, dtype=torch.bool)
            self.image_scored = torch.zeros(self.num_images, dtype=torch.bool)
        for name, (shape, dtype) in spec.items():
            if name.split("/")[0] not in GROUPS and name not in self.buffers:
                rows = self.num_images if name.startswith("image/") else self.total
                self.buffers[name] = torch.zeros(
                    (rows, *shape), dtype=dtype, device=self.scored.device
                )
        return spec

    def compute(
        self,
        all_reduce: Reduce | None = None,
        all_gather: Gather | None = None,
        broadcast: Broadcast | None = None,
    ) -> Stats:
        """Statistics over the whole pool, combined over ranks.

        Args:
            all_reduce: sums a tensor over ranks (None: one process).
            all_gather: stacks a tensor of every rank on a new first axis.
            broadcast: sends a picklable object from rank 0 to all ranks.
        Returns:
            (R_total, ...) region tensors (float ones NaN where a region was not scored),
            ``scored`` (R_total,) bool, ``image/...`` (N_images, ...) tensors and
            ``image/scored``, and per row group (``cand``, ``center``) ``<g>/ids`` (M,)
            long (-1 = empty row), ``<g>/key`` (M,) and every row field ``<g>/<field>``
            (M, ...), e.g. ``<g>/feat`` (M, D).
        """
        spec = self._layout(broadcast)
        assert self.scored is not None and self.image_scored is not None
        device = self.scored.device

        def reduce(t: torch.Tensor) -> torch.Tensor:
            return all_reduce(t) if all_reduce is not None else t

        out: Stats = {
            "scored": reduce(self.scored.to(torch.int32)) > 0,
            "image/scored": reduce(self.image_scored.to(torch.int32)) > 0,
        }
        for name, buf in self.buffers.items():
            value = reduce(buf)
            if value.is_floating_point():
                mask = out["image/scored" if name.startswith("image/") else "scored"]
                mask = mask.view(-1, *([1] * (value.dim() - 1)))
                value = torch.where(mask, value, torch.full_like(value, float("nan")))
            out[name] = value
        for group in GROUPS:
            fields = {
                k.split("/", 1)[1]: v
                for k, v in spec.items()
                if k.startswith(group + "/") and k.split("/", 1)[1] not in ("key", "ids")
            }
            if fields:
                out.update(self._gathered(group, fields, device, all_gather))
        return out

    def _gathered(
        self,
        group: str,
        fields: dict[str, tuple[tuple[int, ...], torch.dtype]],
        device: torch.device,
        all_gather: Gather | None,
    ) -> Stats:
        m = self.strategy.max_candidates

        def padded() -> Stats:
            out = {
                "key": torch.full((m,), -torch.inf, device=device),
                "ids": torch.full((m,), -1, dtype=torch.long, device=device),
            }
            for name, (shape, dtype) in fields.items():
                out[name] = torch.zeros((m, *shape), dtype=dtype, device=device)
            g = self.groups.get(group)
            if g:
                k = g["key"].numel()
                for name in out:
                    out[name][:k] = g[name]
            return out

        out = padded()
        if all_gather is not None:  # M rows on every rank, merged again
            rows = {name: all_gather(value).flatten(0, 1) for name, value in out.items()}
            self.groups.pop(group, None)
            self._merge(group, rows)
            out = padded()
        return {f"{group}/{name}": value for name, value in out.items()}
