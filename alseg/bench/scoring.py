"""``alseg bench scoring``: the cost of alseg's prediction passes over a plain one.

Every figure is the wall time of a pass of ``trainer.predict`` over the same images with
the same model, divided by the time of a plain ``trainer.predict`` that keeps nothing
(``return_predictions=False``): what scoring, reduction and the method plug-ins add on
top of the network's forward pass. Measured in one process, one after the other, each the
best of ``--repeat`` runs:

* ``entropy``, ``bvsb``: one pass, logits reduced to region scores;
* ``pixbal``: MulActSeg's two passes (class weights, then weighted BvSB);
* ``stage2``: the pseudo-label pass over labeled images (decoder features, propagation,
  one PNG per image), against a plain pass that also returns decoder features;
* ``sieve``: the sieving pass over labeled images (confidence, knee per merged region,
  one PNG per image);
* ``typiclust``, ``probcover``: the cold-start selection of ``--budget`` regions from
  nothing labeled: the region-embedding pass plus the selection (k-means and typicality;
  ProbCover's radius search and greedy coverage), over a plain pass; the selection's share
  is printed as well.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from alseg.acquisition.base import SelectionContext
from alseg.acquisition.passes import AcquisitionCallback
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.strategies import get_strategy
from alseg.bench.common import emit
from alseg.build import quiet_lightning
from alseg.data.datamodule import ActiveDataModule
from alseg.data.labels import LabelStore
from alseg.data.oracle import SimulatedOracle
from alseg.data.regions import RegionSet, compute_regions
from alseg.data.synthetic import SyntheticScenes
from alseg.extensions.sieve import SieveConfig, SieveWriter, image_answers
from alseg.extensions.stage2 import PseudoLabelWriter
from alseg.models.factory import ModelSpec
from alseg.models.prediction import PredictionCallback
from alseg.models.segmentation import OptimSpec, PredictOutputs, SegmentationModule


class _Plain(PredictionCallback):
    """A pass that discards the outputs (the baseline)."""

    def on_batch(self, outputs: Any, batch: dict[str, Any]) -> None:
        pass


def _trainer(callbacks: list[pl.Callback]) -> pl.Trainer:
    return pl.Trainer(
        accelerator="auto",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=callbacks,
    )


def _best(fn: Any, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _setup(images: int, size: int, cell: int) -> tuple[SegmentationModule, ActiveDataModule]:
    """A pool of synthetic scenes with grid regions, every region labeled with its
    classes (multi-class answers), and a DeepLabV3+ (ResNet-18, cosine head, void output)."""
    train = SyntheticScenes("train", images, size, "source", 0)
    regions = compute_regions(train.image_uint8, images, "grid", {"cell": cell}, "", None, 1, False)
    store = LabelStore(regions.total, train.num_classes)
    oracle = SimulatedOracle(train.mask, regions, train.num_classes, "multiclass", void_bit=True)
    store.add(oracle.annotate(np.arange(regions.total)), 0)
    dm = ActiveDataModule(train, train, train, regions, store, train.mask, pool_batch_size=8)
    torch.manual_seed(0)
    spec = ModelSpec(
        "DeepLabV3Plus",
        "resnet18",
        None,
        train.num_classes,
        tuple(train.class_names),
        OptimSpec(),
        void_output=True,
        cosine=True,
    )
    return spec.build().eval(), dm


def _scoring(model: SegmentationModule, dm: ActiveDataModule, name: str, repeat: int) -> float:
    strategy = get_strategy(name)
    regions: RegionSet = dm.regions
    scorer = PoolScorer(strategy, regions.num_regions, regions.offsets)
    cb = AcquisitionCallback(scorer, strategy.outputs())
    trainer = _trainer([cb])

    def run() -> None:
        context: dict[str, torch.Tensor] = {}
        for p in range(strategy.passes):
            cb.begin(p, context)
            trainer.predict(model, dataloaders=dm.images_dataloader(np.arange(len(dm.regions))))
            assert cb.stats is not None
            if p < strategy.passes - 1:
                context = strategy.end_pass(p, cb.stats)

    return _best(run, repeat)


def _coverage(
    model: SegmentationModule, dm: ActiveDataModule, name: str, budget: float, repeat: int
) -> tuple[float, float]:
    """(best total seconds, the selection's seconds in that run) of a cold-start selection."""
    strategy = get_strategy(name)
    regions: RegionSet = dm.regions
    scorer = PoolScorer(strategy, regions.num_regions, regions.offsets)
    cb = AcquisitionCallback(scorer, strategy.outputs())
    trainer = _trainer([cb])
    labeled = torch.zeros(regions.total, dtype=torch.bool)
    costs = torch.ones(regions.total)
    best = (float("inf"), 0.0)
    for _ in range(repeat):
        t0 = time.perf_counter()
        cb.begin(0, {})
        trainer.predict(model, dataloaders=dm.images_dataloader(np.arange(len(regions))))
        assert cb.stats is not None
        t1 = time.perf_counter()
        g = torch.Generator().manual_seed(0)
        scores = strategy.scores(cb.stats, labeled, g)
        strategy.select(scores, cb.stats, SelectionContext(costs, labeled, budget, g))
        t2 = time.perf_counter()
        best = min(best, (t2 - t0, t2 - t1))
    return best


def _plain(model: SegmentationModule, dm: ActiveDataModule, features: bool, repeat: int) -> float:
    trainer = _trainer([_Plain(PredictOutputs(features=features))])
    loader = dm.images_dataloader(np.arange(len(dm.regions)))
    return _best(lambda: trainer.predict(model, loader, return_predictions=False), repeat)


def _writer_pass(
    model: SegmentationModule, dm: ActiveDataModule, kind: str, folder: Path, repeat: int
) -> float:
    loop = SimpleNamespace(store=dm.store, dm=dm)
    indices = np.arange(len(dm.regions))
    if kind == "stage2":
        cb: PredictionCallback = PseudoLabelWriter(folder, loop)
    else:
        oracle = SimulatedOracle(dm.labeled.mask_fn, dm.regions, dm.store.num_classes, "dominant")
        ann = oracle.annotate(np.arange(dm.regions.total))
        cfg = SieveConfig(min_size=1, min_pixels=8)
        answers = image_answers(ann, dm.regions, cfg)
        indices = np.array(sorted(answers), dtype=np.int64)
        cb = SieveWriter(folder, answers, loop, cfg)
    trainer = _trainer([cb])
    loader = dm.images_dataloader(indices)
    return _best(lambda: trainer.predict(model, loader, return_predictions=False), repeat)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="alseg bench scoring")
    p.add_argument("--quick", action="store_true", help="a smoke run: 8 images of 64x64")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--cell", type=int, default=16, help="grid region side in pixels")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--budget", type=float, default=100, help="regions the cold start selects")
    kinds = ("entropy", "bvsb", "pixbal", "stage2", "sieve", "typiclust", "probcover")
    p.add_argument("--only", nargs="+", choices=kinds, default=kinds, help="figures to measure")
    a = p.parse_args(argv)
    quiet_lightning()
    images, size, repeat = (8, 64, 1) if a.quick else (a.images, a.size, a.repeat)
    pl.seed_everything(0, verbose=False)
    model, dm = _setup(images, size, a.cell)
    common = {"images": images, "size": f"{size}x{size}", "device": "cpu"}
    if torch.cuda.is_available():
        common["device"] = "cuda"
    _plain(model, dm, False, 1)  # warm-up
    base = _plain(model, dm, False, repeat)
    base_feat = _plain(model, dm, True, repeat)
    emit("plain_predict", seconds=round(base, 3), with_features_s=round(base_feat, 3), **common)
    for name in [k for k in ("entropy", "bvsb", "pixbal") if k in a.only]:
        t = _scoring(model, dm, name, repeat)
        emit(f"score_{name}", seconds=round(t, 3), ratio=round(t / base, 3), **common)
    for name in [k for k in ("typiclust", "probcover") if k in a.only]:
        t, sel = _coverage(model, dm, name, a.budget, repeat)
        emit(
            f"select_{name}",
            seconds=round(t, 3),
            ratio=round(t / base, 3),
            selection_s=round(sel, 3),
            regions=int(dm.regions.total),
            budget=a.budget,
            **common,
        )
    with tempfile.TemporaryDirectory() as tmp:
        for kind in [k for k in ("stage2", "sieve") if k in a.only]:
            folder = Path(tmp) / kind
            folder.mkdir()
            t = _writer_pass(model, dm, kind, folder, repeat)
            ref = base_feat if kind == "stage2" else base
            emit(f"{kind}_pass", seconds=round(t, 3), ratio=round(t / ref, 3), **common)
