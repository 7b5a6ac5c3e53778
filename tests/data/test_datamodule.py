import numpy as np
import torch

from alseg.data.datamodule import ActiveDataModule
from alseg.data.labels import NO_CLASS, Annotations, LabelStore
from alseg.data.regions import RegionSet, grid_regions
from alseg.data.synthetic import SyntheticScenes


def make(n=4):
    ds = SyntheticScenes("train", n, 16)
    rs = RegionSet([grid_regions(16, 16, 8) for _ in range(n)])  # 4 regions per image
    store = LabelStore(rs.total, ds.num_classes)
    dm = ActiveDataModule(ds, ds, ds, rs, store, ds.mask, batch_size=2, hflip=False)
    return ds, rs, store, dm


def test_targets_come_from_the_store():
    ds, rs, store, dm = make()
    assert len(dm.labeled) == 0 and len(dm.pool) == 4
    store.add(Annotations([1], "dominant", [3], [1.0]), 0)  # image 0, region 1 (top right)
    store.add(Annotations([4 + 2], "pixel", [NO_CLASS], [1.0]), 0)  # image 1, region 2
    store.add(Annotations([8], "dominant", [NO_CLASS], [1.0]), 0)  # void-majority answer
    dm.refresh()
    assert dm.labeled.indices.tolist() == [0, 1, 2]
    t0 = dm.labeled.target(0)
    assert (t0[:8, 8:] == 3).all() and (t0[:8, :8] == 255).all() and (t0[8:] == 255).all()
    t1 = dm.labeled.target(1)
    assert torch.equal(t1[8:, :8], ds.mask(1)[8:, :8]) and (t1[:8] == 255).all()
    assert (dm.labeled.target(2) == 255).all()


def test_pool_drops_fully_labeled_images_and_yields_regions():
    ds, rs, store, dm = make()
    store.add(Annotations(np.arange(4, 8), "dominant", [0, 0, 0, 0], np.ones(4)), 0)
    dm.refresh()
    assert dm.pool.indices.tolist() == [0, 2, 3]
    batch = next(iter(dm.pool_dataloader()))
    assert batch["regions"].shape == (3, 16, 16) and batch["index"].tolist() == [0, 2, 3]
    tb = next(iter(dm.train_dataloader()))
    assert tb["target"].shape == (1, 16, 16) and (tb["target"] == 0).all()


def test_state_dict_roundtrip():
    ds, rs, store, dm = make()
    store.add(Annotations([0, 5], "dominant", [1, 2], [1.0, 1.0]), 0)
    state = dm.state_dict()
    _, _, store2, dm2 = make()
    dm2.load_state_dict(state)
    assert dm2.store.labeled_mask().tolist() == store.labeled_mask().tolist()
    assert dm2.labeled.indices.tolist() == [0, 1]


def test_drop_last_is_decided_on_each_rank_s_shard():
    from alseg.distributed import shard_drop_last

    # 24 labeled images, batch 16, 2 ranks: 12 per rank, less than a batch: keep it
    assert not shard_drop_last(24, 16, 2)
    assert shard_drop_last(24, 16, 1)  # one process: 24 > 16, the incomplete batch goes
    assert shard_drop_last(35, 16, 2)  # 18 per rank (padded): more than a batch
    assert not shard_drop_last(32, 16, 2)  # exactly a batch per rank: nothing to drop
