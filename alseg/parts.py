"""Build the data parts of an experiment from its config: the pool, val and test sets, the
source domain, the region maps, the label store, the annotator and the round-0 budget
(``build_parts``); ``alseg.build`` builds the rest."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from alseg.acquisition.strategies import Schedule, build_schedule, strategy_names
from alseg.config import ConfigError
from alseg.data.datamodule import ActiveDataModule
from alseg.data.datasets import DataError
from alseg.data.imagefolder import build_imagefolder
from alseg.data.labels import LabelStore
from alseg.data.layouts import PAIRS, build_splits
from alseg.data.layouts import build_source as build_source_split
from alseg.data.oracle import ClickCost, HumanOracle, SimulatedOracle
from alseg.data.regions import RegionSet, RegionStats, compute_regions
from alseg.data.shapes import SyntheticShapes
from alseg.data.synthetic import SyntheticScenes
from alseg.data.weights import load_image_weights
from alseg.schema import RootConfig, settings
from alseg.schema.data import (
    DataCommon,
    FileData,
    ImageFolderData,
    ShapesData,
    SyntheticData,
)
from alseg.schema.sections import ActiveConfig, LabelingConfig, RegionsConfig


@dataclass
class Parts:
    """Objects of an experiment that do not depend on the run dir."""

    train: Any  # data sets following the sample contract (SyntheticScenes, FileSegmentationDataset)
    val: Any
    test: Any
    regions: RegionSet
    store: LabelStore
    oracle: SimulatedOracle
    datamodule: ActiveDataModule
    strategy: Schedule
    settings: RootConfig  # the config's typed sections (``alseg.schema.settings``)


def _synthetic(d: SyntheticData | ShapesData, split: str, n: int, domain: str) -> Any:
    if isinstance(d, ShapesData):
        return SyntheticShapes(
            split, n, d.image_size, domain, d.seed, d.imbalance, d.gap, d.segmentation
        )
    shift = float(d.label_shift) if domain == d.domain else 0.0
    return SyntheticScenes(split, n, d.image_size, domain, d.seed, shift)  # type: ignore[arg-type]


def build_datasets(d: DataCommon, strict: bool = True) -> tuple[Any, Any, Any]:
    """(pool, val, test) data sets of the typed ``data`` section (``settings(cfg).data``);
    not ``strict``: the file layouts collect the problems of each split (``problems``)
    instead of stopping at the first."""
    if isinstance(d, (SyntheticData, ShapesData)):
        return tuple(
            _synthetic(d, split, n, d.domain)
            for split, n in (("train", d.num_train), ("val", d.num_val), ("test", d.num_test))
        )
    if isinstance(d, ImageFolderData):
        return build_imagefolder(d)[:3]  # type: ignore[return-value]
    assert isinstance(d, FileData), f"data={d.name} is no image data set"
    return build_splits(d, strict)


def build_source(d: DataCommon) -> Any:
    """The labeled source domain of the typed ``data`` section (active domain adaptation)."""
    if isinstance(d, (SyntheticData, ShapesData)):
        if d.domain == "source":
            raise ConfigError(
                "adaptation.enabled=true needs the target domain as the pool: data.domain=target"
            )
        return _synthetic(d, "train", int(d.num_source), "source")
    if d.name in PAIRS and isinstance(d, FileData):
        return build_source_split(d)
    if isinstance(d, ImageFolderData):
        return build_imagefolder(d)[3]
    raise ConfigError(
        f"data={d.name} has no source domain; use data=synthetic, shapes or "
        f"{', '.join(PAIRS)} with adaptation.enabled=true"
    )


def check_batchable(sets: dict[str, Any], d: DataCommon) -> None:
    """Images of different sizes batch only where a setting makes them equal: training
    batches need a crop (``data.crop_size``), scoring and evaluation batches one image
    (``data.pool_batch_size=1``). Fails naming two files of different sizes."""
    for split, ds in sets.items():
        sizes = getattr(ds, "image_sizes", None)
        if ds is None or sizes is None:
            continue
        distinct = sorted(set(sizes))
        if len(distinct) < 2:
            continue
        training = split in ("train", "source")
        if (not training or d.crop_size is not None) and d.pool_batch_size == 1:
            continue
        a, b = (sizes.index(s) for s in distinct[:2])
        raise DataError(
            f"{split} images differ in size: {ds.pairs[a][0]} is {sizes[a][1]}x{sizes[a][0]}, "
            f"{ds.pairs[b][0]} is {sizes[b][1]}x{sizes[b][0]} (width x height); set "
            "data.crop_size=[H,W] (training batches) and data.pool_batch_size=1 (scoring and "
            "evaluation), or resize every image with data.image_size=[H,W]"
        )


def region_params(r: RegionsConfig) -> dict[str, Any]:
    """Parameters of ``regions.method`` (they are part of the cache key)."""
    if r.method == "slic":
        return {"n_segments": r.n_segments, "compactness": r.compactness}
    if r.method == "seeds":
        return {"n_segments": r.n_segments, **dataclasses.asdict(r.seeds)}
    return {"cell": r.cell}


def build_regions(
    r: RegionsConfig, train: Any, progress: bool = True, stats: RegionStats | None = None
) -> RegionSet:
    return compute_regions(
        train.image_uint8,
        len(train),
        r.method,
        region_params(r),
        train.fingerprint,
        r.cache_dir,
        r.num_workers,
        progress,
        max_memory_mb=float(r.max_memory_mb),
        stats=stats,
    )


def build_parts(cfg: DictConfig, progress: bool = True) -> Parts:
    """Data, regions, labels, annotator, data module and strategy of an experiment (the data
    builders read the ``data`` section as its data set's schema dataclass)."""
    s = settings(cfg)
    d = s.data
    adapt = s.adaptation
    train, val, test = build_datasets(d)
    source = build_source(d) if adapt.enabled else None
    check_batchable({"train": train, "val": val, "test": test, "source": source}, d)
    regions = build_regions(s.regions, train, progress)
    store = LabelStore(regions.total, train.num_classes)
    lab = s.labeling
    kind = HumanOracle if lab.oracle == "human" else SimulatedOracle
    extra: dict[str, Any] = {"expected_cost": store.mean_cost} if lab.oracle == "human" else {}
    oracle = kind(
        train.mask,
        regions,
        train.num_classes,
        lab.type,
        ClickCost(lab.cost_per_region),
        train.ignore_index,
        void_bit=bool(lab.void_bit),
        trim_kernel=int(lab.trim_kernel),
        free_background=lab.type == "image" and s.weak.background,
        **extra,
    )
    dm = ActiveDataModule(
        train,
        val,
        test,
        regions,
        store,
        train.mask,
        batch_size=d.batch_size,
        pool_batch_size=d.pool_batch_size,
        num_workers=d.num_workers,
        ignore_index=train.ignore_index,
        hflip=d.hflip,
        scale_range=tuple(d.scale_range) if d.scale_range else None,
        crop_size=tuple(d.crop_size) if d.crop_size else None,
        source_set=source,
        unlabeled_target=adapt.enabled and adapt.alignment != "none",
        void_class=train.num_classes if has_void_output(lab) else None,
        image_weights=load_image_weights(d.image_weights, len(train)) if d.image_weights else None,
        seed=s.seed,
    )
    if adapt.enabled and adapt.source_sampling == "balanced":
        dm.set_source_prior(None, balanced=True)
    strategy = build_strategy(s.active, train.num_classes, has_void_output(lab))
    return Parts(train, val, test, regions, store, oracle, dm, strategy, s)


def build_strategy(a: ActiveConfig, num_classes: int, void_output: bool) -> Schedule:
    """The schedule of ``active.strategy`` with its parameters and the defaults that depend
    on the data: a void class for PixBal, the class count for ProbCover's purity radius."""
    params = copy.deepcopy(dict(a.strategy_params))
    names = strategy_names(a.strategy)
    single = isinstance(a.strategy, str)
    defaults = {
        # void-majority regions score 0
        "pixbal": {"void_class": num_classes} if void_output else {},
        # the pseudo labels of ProbCover's purity radius: one cluster per class
        "probcover": {"num_classes": num_classes},
    }
    for name, extra in defaults.items():
        if name in names and extra:
            target = params if single else params.setdefault(name, {})
            for k, v in extra.items():
                target.setdefault(k, v)
    return build_schedule(a.strategy, params)


def has_void_output(lab: LabelingConfig) -> bool:
    """Multi-class labels with a void bit: the model predicts C + 1 outputs."""
    return lab.type == "multiclass" and bool(lab.void_bit)


def init_budget(a: ActiveConfig, pool_cost: float) -> float:
    """Clicks of round 0: the whole pool's cost for a full-supervision reference."""
    if a.full_supervision:
        return pool_cost
    return float(a.init_budget if a.init_budget is not None else a.budget)


def check_budget(pool_cost: float, init_budget: float, budget: float, rounds: int) -> None:
    """Fail before anything runs when the planned clicks cannot be spent on the pool."""
    if pool_cost <= 0:
        raise ValueError("the pool is empty: there is no region to label")
    planned = init_budget + budget * (rounds - 1)
    if planned > pool_cost:
        raise ValueError(
            f"the run plans {planned:g} clicks (active.init_budget={init_budget:g} + "
            f"{rounds - 1} rounds x active.budget={budget:g}) but the whole pool costs "
            f"{pool_cost:g} clicks; lower active.budget or active.rounds, or enlarge the pool"
        )
