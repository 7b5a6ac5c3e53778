"""Which process writes: rank 0 of a multi-process (DDP) run, known before Lightning starts.

Lightning's launchers (its own subprocess launcher, torchrun, SLURM's srun) run the same
``alseg`` command in every process. Every process runs the round loop and applies the
same LabelStore updates; only the process of global rank 0 writes the run dir.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

RANK_VARIABLES = ("RANK", "SLURM_PROCID", "NODE_RANK", "LOCAL_RANK")
RUN_DIR_VARIABLE = "ALSEG_RUN_DIR"


def is_rank_zero() -> bool:
    """True unless a launcher's environment marks this process as another rank."""
    return all(os.environ.get(v, "0") == "0" for v in RANK_VARIABLES)


def shared_run_dir() -> str | None:
    """The run dir chosen by rank 0, or by the launcher for all ranks.

    Rank 0 exports it before the first Trainer starts, so processes that Lightning launches
    later inherit it; with torchrun or SLURM set ``run_dir=`` explicitly (or rely on the
    job id, see ``config.default_run_dir``).
    """
    return os.environ.get(RUN_DIR_VARIABLE)


@contextmanager
def exported(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of a block (child processes inherit it)."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def world_size() -> int:
    """Processes of the started process group (1 outside DDP or before it starts)."""
    import torch

    d = torch.distributed
    return d.get_world_size() if d.is_available() and d.is_initialized() else 1


def shard_drop_last(n: int, batch_size: int, world: int) -> bool:
    """``drop_last`` of a training loader over ``n`` samples that DDP shards over ``world``
    ranks (each rank gets ceil(n / world) of them): a rank's incomplete last batch is
    dropped (a batch of one image cannot train batch norm after global pooling) only when
    the rank holds more than one batch, so that no rank is left without a batch. Decided on
    the global count, 24 labeled images, batch 16 and 2 ranks dropped both ranks' only batch:
    the fit trained nothing, and a step-limited one never ended."""
    per_rank = -(-n // world)
    return per_rank > batch_size


def adopt_rank_zero_state(trainer: Any, module: Any, buffers_only: bool = False) -> None:
    """Under DDP, give every rank rank 0's weights (or only its buffers): DDP keeps the
    parameters equal, not batch-norm statistics. No-op in a single process."""
    if trainer.world_size <= 1:
        return
    import torch

    named = module.named_buffers() if buffers_only else module.state_dict().items()
    state = trainer.strategy.broadcast({k: v.detach().cpu() for k, v in named}, src=0)
    with torch.no_grad():
        for k, v in module.named_buffers() if buffers_only else module.state_dict().items():
            v.copy_(state[k].to(v.device))


def gather_rows(n: int, compute: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """``compute(idx)`` -> ``{name: tensor with a row per index}`` for the rows 0..n-1.

    In a started process group the rows are shared out (rank r computes rows r, r + world,
    ...) and gathered, so that every rank returns all ``n`` rows in order, the same on every
    rank; in one process ``compute`` gets every row at once. Tensors come back on the CPU.
    """
    import torch

    world = world_size()
    if world == 1:
        return {k: v.cpu() for k, v in compute(torch.arange(n)).items()}
    d = torch.distributed
    idx = torch.arange(d.get_rank(), n, world)
    local = {k: v.cpu() for k, v in compute(idx).items()} if len(idx) else None
    parts: list[Any] = [None] * world
    d.all_gather_object(parts, (idx, local))
    filled = [(i, p) for i, p in parts if p is not None]
    out = {k: v.new_empty((n, *v.shape[1:])) for k, v in filled[0][1].items()}
    for i, p in filled:
        for k, v in p.items():
            out[k][i] = v
    return out
