"""ActiveDataModule: the labeled view and the unlabeled pool of one data set.

Training targets are built from the LabelStore, never from the pool's ground truth
(``pixel`` labels read the pixels of labeled regions only, as their answer). Between
rounds ``refresh()`` recomputes index arrays and per-region targets; data sets, region
maps and workers are not rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from alseg.data.labels import DENSE, MULTI, NO_CLASS, LabelStore
from alseg.data.regions import RegionSet
from alseg.data.transforms import TrainAugment
from alseg.data.weights import source_image_weights
from alseg.distributed import shard_drop_last, world_size


class TargetStep(Protocol):
    """A change a method makes to the training targets (``LabeledView.set_step``).

    ``replaces``: the step gives the whole target of an image (called with ``target``
    None; e.g. pseudo-label maps) and the batch carries no region answers; otherwise it
    edits the target built from the store (e.g. sieve masks drop pixels)."""

    @property
    def replaces(self) -> bool: ...

    def __call__(self, index: int, target: torch.Tensor | None) -> torch.Tensor: ...


class LabeledView(Dataset):
    """Pool images that have at least one labeled region, with targets from the store.

    Items: ``image`` (3,H,W), ``target`` (H,W) long (255 = no label), ``index``; with
    multi-class labels also ``regions`` (H,W) long and ``region_classes`` (R_max + 1, C+1)
    bool (the answers, padded to the largest region count of the pool; row R_max is the
    all-False answer of pixels that a crop pads). Methods change the targets through named
    steps (``set_step``): the newest replacing step, if any, gives the target (stage-2
    pseudo labels); else the store's target goes through the editing steps in the order they
    were set (sieve masks). ``augment`` (random scale, crop, flip) transforms image, target
    and regions together.
    """

    def __init__(
        self,
        dataset: Dataset,
        regions: RegionSet,
        mask_fn: Callable[[int], torch.Tensor],
        ignore_index: int = 255,
        augment: TrainAugment | None = None,
        void_class: int | None = None,
    ) -> None:
        self.dataset, self.regions, self.mask_fn = dataset, regions, mask_fn
        self.ignore_index, self.void_class = ignore_index, void_class
        self.indices = np.zeros(0, dtype=np.int64)
        self.region_targets = torch.full((regions.total,), ignore_index, dtype=torch.long)
        self.store: LabelStore | None = None
        self.steps: dict[str, TargetStep] = {}
        self.max_regions = int(regions.num_regions.max(initial=1))
        self.augment = augment or TrainAugment(hflip=False)
        self.augment.ignore_index, self.augment.pad_region = ignore_index, self.max_regions

    def refresh(self, store: LabelStore) -> None:
        # class (void_class for void-only answers), DENSE, MULTI, NO_CLASS
        targets = torch.from_numpy(store.region_targets(self.void_class))
        targets[(targets == NO_CLASS) | (targets == MULTI)] = self.ignore_index
        self.region_targets = targets
        self.store = store
        per_image = np.add.reduceat(
            store.labeled_mask().astype(np.int64), self.regions.offsets[:-1]
        )
        self.indices = np.flatnonzero(per_image > 0).astype(np.int64)

    def set_step(self, name: str, step: TargetStep | None) -> None:
        """Set (or, with None, remove) the target step called ``name``."""
        self.steps.pop(name, None)
        if step is not None:
            self.steps[name] = step

    def _replacing(self) -> TargetStep | None:
        found = [s for s in self.steps.values() if s.replaces]
        return found[-1] if found else None

    def region_classes(self, index: int) -> torch.Tensor:
        """(R_max + 1, C+1) bool multi-class answers of image ``index``'s regions."""
        assert self.store is not None
        start, stop = int(self.regions.offsets[index]), int(self.regions.offsets[index + 1])
        bits = self.store.answer_bits(np.arange(start, stop))
        out = torch.zeros(self.max_regions + 1, bits.shape[1], dtype=torch.bool)
        out[: stop - start] = torch.from_numpy(bits)
        return out

    def target(self, index: int) -> torch.Tensor:
        """(H, W) long training target of pool image ``index``."""
        replacing = self._replacing()
        if replacing is not None:
            return replacing(index, None)
        rmap = self.regions.map_tensor(index)
        target = self.region_targets[int(self.regions.offsets[index]) + rmap]
        dense = target == DENSE
        if dense.any():  # pixel labels: the region's own pixels are the answer
            target = torch.where(dense, self.mask_fn(index), target)
        for step in self.steps.values():
            target = step(index, target)
        return target

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        index = int(self.indices[k])
        item = {"image": self.dataset[index]["image"], "target": self.target(index), "index": index}
        answers = self.store is not None and self.store.bits is not None
        if answers and self._replacing() is None:
            item["regions"] = self.regions.map_tensor(index)
            item["region_classes"] = self.region_classes(index)
        return self.augment(item)


class ImageView(Dataset):
    """Some pool images, unaugmented, with their region maps (prediction passes)."""

    def __init__(self, dataset: Dataset, regions: RegionSet, indices: np.ndarray) -> None:
        self.dataset, self.regions = dataset, regions
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Any]:
        index = int(self.indices[k])
        return {
            "image": self.dataset[index]["image"],
            "regions": self.regions.map_tensor(index),
            "index": index,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """``default_collate`` with a clear error for images of different sizes in one batch."""
    sizes = {tuple(it["image"].shape[-2:]) for it in items}
    if len(sizes) > 1:
        shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
        raise ValueError(
            f"images of different sizes ({shown}) in one batch: set data.pool_batch_size=1, "
            "or give the data set a fixed size (data.image_size) or a training crop "
            "(data.crop_size)"
        )
    return default_collate(items)


class SourceView(Dataset):
    """The labeled source domain (active domain adaptation): full masks, augmented."""

    def __init__(self, dataset: Dataset, augment: TrainAugment) -> None:
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, k: int) -> dict[str, Any]:
        item = self.dataset[k]
        return self.augment({"image": item["image"], "mask": item["mask"], "index": k})


class EvalShardSampler(DistributedSampler):
    """Evaluation sampler for DDP: rank r takes items r, r + world, ... with no padding
    (Lightning's default DistributedSampler repeats items to even out the shards, which
    would count them twice in the mIoU). The shard is decided at iteration time, because
    the loader may be built before the trainer starts the process group. Being a
    DistributedSampler, Lightning keeps it instead of injecting its own."""

    def __init__(self, dataset: Dataset) -> None:  # no super().__init__: it needs the group
        self.dataset = dataset
        self.epoch, self.seed, self.shuffle, self.drop_last = 0, 0, False, False

    @property
    def num_replicas(self) -> int:  # type: ignore[override]
        return world_size()

    @property
    def rank(self) -> int:  # type: ignore[override]
        d = torch.distributed
        return d.get_rank() if d.is_available() and d.is_initialized() else 0

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))  # type: ignore[arg-type]


class ActiveDataModule(pl.LightningDataModule):
    """Train pool + val + test, region maps of the pool, and the LabelStore.

    Args:
        train_set: the pool (samples follow the alseg sample contract).
        val_set, test_set: evaluation splits (full ground truth).
        regions: region maps of ``train_set``.
        store: the LabelStore of the pool.
        mask_fn: ``index -> (H, W)`` ground truth of the pool; used only for regions the
            store holds ``pixel`` labels for (they are the annotator's answer).
        batch_size, pool_batch_size, num_workers: loader settings.
        ignore_index: void label.
        hflip: random horizontal flips for training.
        scale_range: (min, max) random rescale of training images (None: off).
        crop_size: (height, width) random training crop, padded if larger (None: off).
        source_set: the labeled source domain (active domain adaptation), or None.
        unlabeled_target: also yield unlabeled pool batches (alignment losses).
        void_class: the model's void output (multi-class answers with a void bit): answers
            of the void bit alone train it; None: they give no target.
        image_weights: (N,) sampling weight of each pool image (e.g. the weights of a
            debiasing run, ``alseg.data.weights.load_image_weights``): labeled images are drawn with
            replacement in proportion to them; None: shuffled uniformly.
        seed: seed of the weighted sampler (the same on every rank).
    """

    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset,
        test_set: Dataset,
        regions: RegionSet,
        store: LabelStore,
        mask_fn: Callable[[int], torch.Tensor],
        batch_size: int = 8,
        pool_batch_size: int = 16,
        num_workers: int = 0,
        ignore_index: int = 255,
        hflip: bool = True,
        scale_range: tuple[float, float] | None = None,
        crop_size: tuple[int, int] | None = None,
        source_set: Dataset | None = None,
        unlabeled_target: bool = False,
        void_class: int | None = None,
        image_weights: np.ndarray | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if len(regions) != len(train_set):  # type: ignore[arg-type]
            raise ValueError(f"{len(regions)} region maps for {len(train_set)} pool images")  # type: ignore[arg-type]
        if regions.total != store.num_regions:
            raise ValueError(
                f"LabelStore has {store.num_regions} regions, region maps {regions.total}"
            )
        if batch_size < 1 or pool_batch_size < 1:
            raise ValueError("batch_size and pool_batch_size must be >= 1")
        self.train_set, self.val_set, self.test_set = train_set, val_set, test_set
        self.regions, self.store = regions, store
        self.batch_size, self.pool_batch_size = batch_size, pool_batch_size
        self.num_workers = num_workers
        augment = TrainAugment(scale_range, crop_size, hflip)
        self.labeled = LabeledView(train_set, regions, mask_fn, ignore_index, augment, void_class)
        self.pool = ImageView(train_set, regions, np.arange(len(regions)))
        self.source = SourceView(source_set, augment) if source_set is not None else None
        self.unlabeled_target = unlabeled_target
        self.source_weights: np.ndarray | None = None
        self._source_pixels: np.ndarray | None = None
        if image_weights is not None and len(image_weights) != len(regions):
            raise ValueError(f"{len(image_weights)} image weights for {len(regions)} pool images")
        self.image_weights, self.seed = image_weights, seed
        self.refresh()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the pool's classes."""
        return tuple(self.train_set.class_names)  # type: ignore[attr-defined]

    def refresh(self) -> None:
        """Rebuild index arrays and targets from the store (after every LabelStore.add)."""
        self.labeled.refresh(self.store)
        unlabeled = ~self.store.labeled_mask()
        per_image = np.add.reduceat(unlabeled.astype(np.int64), self.regions.offsets[:-1])
        self.pool.indices = np.flatnonzero(per_image > 0).astype(np.int64)

    def _loader(
        self,
        ds: Dataset,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        shard: bool = False,
    ) -> DataLoader:
        sampler = EvalShardSampler(ds) if shard else None
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=collate,
            # Not persistent: workers hold a copy of the views, which refresh() changes.
            persistent_workers=False,
        )

    def source_class_pixels(self) -> np.ndarray:
        """(N_s, C) labeled pixels of each class in each source image (read once)."""
        if self._source_pixels is None:
            assert self.source is not None
            ds: Any = self.source.dataset
            C, ignore = int(ds.num_classes), int(ds.ignore_index)
            rows = []
            for i in range(len(ds)):
                m = ds.mask(i).reshape(-1)
                rows.append(np.bincount(m[m != ignore].numpy(), minlength=C)[:C])
            self._source_pixels = np.stack(rows)
        return self._source_pixels

    def set_source_prior(self, prior: np.ndarray | None, balanced: bool = False) -> None:
        """Sample source images so that their classes follow ``prior`` (LAMDA), or
        class-balanced (``balanced``), or uniformly (neither)."""
        if prior is None and not balanced:
            self.source_weights = None
        else:
            self.source_weights = source_image_weights(self.source_class_pixels(), prior)

    def _source_loader(self, world: int) -> DataLoader:
        assert self.source is not None
        n = len(self.source)
        sampler = None
        if self.source_weights is not None:
            from torch.utils.data import WeightedRandomSampler

            sampler = WeightedRandomSampler(self.source_weights.tolist(), n, replacement=True)
        return DataLoader(
            self.source,
            batch_size=self.batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=shard_drop_last(n, self.batch_size, world),
            num_workers=self.num_workers,
            collate_fn=collate,
        )

    def _adaptation_loader(self, world: int) -> Any:
        """Source batches + labeled target (when any) + unlabeled target (alignment)."""
        from pytorch_lightning.utilities import CombinedLoader

        loaders: dict[str, DataLoader] = {"source": self._source_loader(world)}
        if len(self.labeled):
            drop = shard_drop_last(len(self.labeled), self.batch_size, world)
            loaders["target"] = self._loader(self.labeled, self.batch_size, True, drop_last=drop)
        if self.unlabeled_target and len(self.pool):
            drop = shard_drop_last(len(self.pool), self.batch_size, world)
            loaders["unlabeled"] = self._loader(self.pool, self.batch_size, True, drop_last=drop)
        return CombinedLoader(loaders, mode="max_size_cycle")

    def train_dataloader(self, world: int | None = None) -> Any:
        """Batches of the labeled view (and the source domain). ``world``: the processes the
        fit will shard them over (``trainer.world_size``; default: the started process
        group's), which decides whether an incomplete last batch can be dropped."""
        world = world_size() if world is None else world
        if self.source is not None:
            return self._adaptation_loader(world)
        if len(self.labeled) == 0:
            raise RuntimeError("no labeled image to train on: the LabelStore is empty")
        drop_last = shard_drop_last(len(self.labeled), self.batch_size, world)
        if self.image_weights is None:
            return self._loader(self.labeled, self.batch_size, True, drop_last=drop_last)
        from torch.utils.data import WeightedRandomSampler

        weights = self.image_weights[self.labeled.indices]
        if not (weights > 0).any():
            raise RuntimeError("every labeled image has image weight 0: nothing to train on")
        # A fixed seed: every DDP rank draws the same sequence (Lightning shards it).
        sampler = WeightedRandomSampler(
            weights.tolist(),
            len(weights),
            replacement=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        return DataLoader(
            self.labeled,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=collate,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.pool_batch_size, False, shard=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.pool_batch_size, False, shard=True)

    def whole_test_dataloader(self) -> DataLoader:
        """The whole test split in every process (an evaluation outside a Trainer)."""
        return self._loader(self.test_set, self.pool_batch_size, False)

    def pool_dataloader(self) -> DataLoader:
        """Unlabeled pool images (at least one unlabeled region), no augmentation."""
        return self._loader(self.pool, self.pool_batch_size, False)

    def images_dataloader(self, indices: np.ndarray) -> DataLoader:
        """The given pool images, unaugmented, with region maps (prediction passes over
        labeled images: stage-2 pseudo labels, sieving)."""
        view = ImageView(self.train_set, self.regions, indices)
        return self._loader(view, self.pool_batch_size, False)

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.store.state_dict().items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.store.load_state_dict({k: np.asarray(v) for k, v in state_dict.items()})
        self.refresh()
