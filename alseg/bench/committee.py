"""``alseg bench committee``: one training epoch of LWBC's batched committee against one of
a single head, on the same cached features.

Features are random (N x 512, as a ResNet-18's), the heads those of LWBC (512 -> 256 ->
C, no bias). Each figure is the wall time of one Lightning epoch (the second: LWBC's
warm-up is 0, so the second epoch runs every part — committee CE, weighted main loss and
out-of-bag distillation), the best of ``--repeat`` runs:

* ``single_head``: ERM with one head (the cost of the data loop and one small MLP);
* ``lwbc``: the committee of M members in one batched product plus the main head;
* ``lwbc_loop`` (with ``--loop``): the same committee as M separate ``nn.Sequential``
  heads called in a Python loop, what the batched form replaces.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from alseg.bench.common import emit
from alseg.build import quiet_lightning
from alseg.debias.heads import mlp_head
from alseg.debias.losses import bootstrap_masks
from alseg.debias.modules import ERM, LWBC, CommitteeSpec, HeadSpec


class _EpochTimer(pl.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


class _LoopCommittee(nn.Module):
    """M heads called one after the other (the reference the stacked form replaces)."""

    def __init__(self, members: int, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(mlp_head(in_dim, hidden, out_dim) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads])


def _epoch_seconds(module: pl.LightningModule, loader: DataLoader, accelerator: str) -> float:
    timer = _EpochTimer()
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator=accelerator,
        devices=1,
        logger=False,
        callbacks=[timer],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, loader)
    return timer.seconds[-1]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="alseg bench committee")
    p.add_argument("--samples", type=int, default=20000)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--members", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--loop", action="store_true", help="also time a Python loop over members")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--quick", action="store_true", help="2,000 samples, 1 repeat (tests)")
    args = p.parse_args(argv)
    if args.quick:
        args.samples, args.repeat = 2000, 1
    quiet_lightning()
    torch.manual_seed(0)
    N, D, C, M = args.samples, 512, args.classes, args.members
    x, y = torch.randn(N, D), torch.randint(C, (N,))
    ds = TensorDataset(x, y, torch.randint(2, (N,)), torch.arange(N))
    spec = HeadSpec(D, 256, C, 2, temperature=150.0, lr=6e-3)
    committee = CommitteeSpec(members=M, set_size=300, warmup=0)
    masks = bootstrap_masks(N, C, M, 300, torch.Generator().manual_seed(0))
    aligned = np.zeros(C, dtype=np.int64)

    def loader() -> DataLoader:
        return DataLoader(ds, batch_size=args.batch_size, shuffle=True)

    def best(make: Any) -> float:
        return min(_epoch_seconds(make(), loader(), args.accelerator) for _ in range(args.repeat))

    single = best(lambda: ERM(spec, aligned))
    lwbc = best(lambda: LWBC(spec, aligned, committee=committee, in_bag=masks))
    fields: dict[str, Any] = {
        "samples": N,
        "members": M,
        "batch_size": args.batch_size,
        "single_head_s": round(single, 3),
        "lwbc_s": round(lwbc, 3),
        "lwbc_over_single": round(lwbc / single, 2),
        "target": "< 3x",
    }
    if args.loop:

        def looped() -> LWBC:
            module = LWBC(spec, aligned, committee=committee, in_bag=masks)
            module.committee = _LoopCommittee(M, D, 256, C)  # type: ignore[assignment]
            return module

        loop = best(looped)
        fields.update(lwbc_loop_s=round(loop, 3), loop_over_batched=round(loop / lwbc, 2))
    emit("committee_epoch", **fields)
