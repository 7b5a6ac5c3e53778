import numpy as np
import torch

from alseg.data.synthetic import CLASS_NAMES, IGNORE_INDEX, SyntheticScenes, render_scene


def test_deterministic_and_distinct_splits_domains():
    a_img, a_mask = render_scene(3, "train", "source", 5, 48)
    b_img, b_mask = render_scene(3, "train", "source", 5, 48)
    assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert not torch.equal(a_mask, render_scene(3, "val", "source", 5, 48)[1])
    t_img, t_mask = render_scene(3, "train", "target", 5, 48)
    assert not torch.allclose(a_img, t_img)


def test_sample_contract():
    ds = SyntheticScenes("val", 3, 32, domain="target")
    s = ds[1]
    assert s["image"].shape == (3, 32, 32) and s["image"].dtype == torch.float32
    assert s["image"].min() >= 0 and s["image"].max() <= 1
    assert s["mask"].shape == (32, 32) and s["mask"].dtype == torch.int64
    assert s["index"] == 1 and s["domain"] == "target"


def test_imbalanced_classes_with_void_borders():
    ds = SyntheticScenes("train", 60, 64)
    counts = np.bincount(ds.masks.numpy().ravel(), minlength=256)
    freq = counts[: len(CLASS_NAMES)] / counts[: len(CLASS_NAMES)].sum()
    assert (freq > 0).all()  # every class occurs
    big = freq[[CLASS_NAMES.index(c) for c in ("road", "building", "sky", "vegetation")]]
    small = freq[[CLASS_NAMES.index(c) for c in ("pole", "sign", "person")]]
    assert big.min() > 5 * small.max()  # driving-like imbalance
    assert counts[IGNORE_INDEX] > 0


def test_colour_alone_does_not_separate_classes():
    # a nearest-mean-colour classifier is far from perfect
    ds = SyntheticScenes("train", 30, 48)
    img = ds.images.permute(0, 2, 3, 1).reshape(-1, 3).float()
    mask = ds.masks.reshape(-1).long()
    valid = mask != IGNORE_INDEX
    img, mask = img[valid], mask[valid]
    means = torch.stack([img[mask == c].mean(0) for c in range(len(CLASS_NAMES))])
    pred = torch.cdist(img, means).argmin(1)
    acc = (pred == mask).float().mean().item()
    assert acc < 0.75
