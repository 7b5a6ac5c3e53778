"""Pool scoring sharded over 2 gloo processes equals scoring in 1 process."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler

from alseg.acquisition.base import SelectionContext
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.strategies import get_strategy
from alseg.data.regions import RegionSet

pytestmark = pytest.mark.ddp

C, H, W, D = 4, 8, 8, 6


def make_pool(n: int) -> RegionSet:
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(n):
        m = rng.integers(0, int(rng.integers(3, 9)), (H, W))
        maps.append(np.unique(m, return_inverse=True)[1].reshape(H, W))
    return RegionSet(maps)


def outputs_of(index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Deterministic fake model outputs of pool images (no model: exact comparisons)."""
    out = {"logits": [], "features": [], "backbone": []}
    for i in index.tolist():
        g = torch.Generator().manual_seed(1000 + i)
        out["logits"].append(torch.randn(C, H, W, generator=g) * 2)
        out["features"].append(torch.randn(D, H // 2, W // 2, generator=g))
        out["backbone"].append(torch.randn(D + 1, H // 4, W // 4, generator=g))
    return {k: torch.stack(v) for k, v in out.items()}


def score(rank: int, world: int, n: int, name: str, params: dict) -> dict:
    rs = make_pool(n)
    labeled = np.zeros(rs.total, dtype=bool)
    labeled[::5] = True
    strategy = get_strategy(name, **params)
    scorer = PoolScorer(strategy, rs.num_regions, rs.offsets, labeled)
    sampler = UnrepeatedDistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=False)
    mine = list(sampler)
    multi = world > 1

    def all_reduce(t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    def all_gather(t):
        out = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(out, t.contiguous())
        return torch.stack(out)

    def broadcast(obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    context = {}
    for p in range(strategy.passes):
        scorer.reset(p, context)
        for s in range(0, len(mine), 2):
            idx = torch.tensor(mine[s : s + 2])
            regions = torch.stack([rs.map_tensor(int(i)) for i in idx])
            out = outputs_of(idx)
            scorer.update(out if strategy.needs_features else out["logits"], regions, idx)
        stats = scorer.compute(
            all_reduce if multi else None,
            all_gather if multi else None,
            broadcast if multi else None,
        )
        if p < strategy.passes - 1:
            context = strategy.end_pass(p, stats)
    lab = torch.from_numpy(labeled)
    gen = torch.Generator().manual_seed(0)
    scores = strategy.scores(stats, lab, gen)
    sel = strategy.select(scores, stats, SelectionContext(torch.ones(rs.total), lab, 6, gen))
    return {"scores": scores, "selection": sel, "shard": mine}


def _worker(rank: int, world: int, port: int, n: int, name: str, params: dict, path: str) -> None:
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        result = score(rank, world, n, name, params)
        torch.save(result, f"{path}.{rank}")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    "name,params",
    [
        ("entropy", {}),
        ("classbal", {}),
        ("pixbal", {"delta": 6.0}),
        ("coreset", {"max_candidates": 10}),
        ("badge", {"max_candidates": 10}),
        ("clue", {"max_candidates": 10}),
        ("lamda", {"max_candidates": 10, "confidence": 0.5}),
    ],
)
@pytest.mark.parametrize("n", [5, 3])  # uneven splits: 3 + 2 and 2 + 1 images
def test_two_processes_equal_one(tmp_path, name, params, n):
    single = score(0, 1, n, name, params)
    path = str(tmp_path / "out")
    mp.start_processes(
        _worker, args=(2, free_port(), n, name, params, path), nprocs=2, start_method="fork"
    )
    r0, r1 = (torch.load(f"{path}.{r}", weights_only=False) for r in range(2))
    assert sorted(r0["shard"] + r1["shard"]) == list(range(n))  # no duplicates, no drops
    for r in (r0, r1):
        torch.testing.assert_close(r["scores"], single["scores"], equal_nan=True)
        assert r["selection"].ids.tolist() == single["selection"].ids.tolist()
        assert r["selection"].extras.keys() == single["selection"].extras.keys()
        for k, v in single["selection"].extras.items():  # e.g. LAMDA's free picks
            np.testing.assert_array_equal(r["selection"].extras[k], v)
