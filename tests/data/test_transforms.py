"""Joint training augmentation: image, target and regions stay aligned; crops pad with
the ignore label and the answer-less region; the loader names mixed sizes."""

from __future__ import annotations

import pytest
import torch

from alseg.data.datamodule import collate
from alseg.data.transforms import TrainAugment


def _item(h: int, w: int) -> dict:
    regions = torch.arange(h * w).reshape(h, w) // 7  # ids change along rows and columns
    image = torch.stack([regions.float(), -regions.float(), torch.ones(h, w)]) / (h * w)
    return {"image": image, "target": regions % 5, "regions": regions, "index": 0}


@pytest.mark.parametrize("seed", range(6))
def test_scale_crop_flip_keep_maps_aligned(seed):
    torch.manual_seed(seed)
    aug = TrainAugment((0.5, 2.0), (24, 20), True, ignore_index=255, pad_region=999)
    out = aug(_item(16, 30))
    assert out["image"].shape == (3, 24, 20) and out["target"].shape == (24, 20)
    pad = out["regions"] == 999
    # target is a function of the region id wherever the crop did not pad
    assert torch.equal(out["target"][~pad], out["regions"][~pad] % 5)
    assert (out["target"][pad] == 255).all()
    assert (out["image"][:, pad] == 0).all()


def test_crop_pads_small_images_and_identity_without_options():
    torch.manual_seed(0)
    out = TrainAugment(None, (20, 40), False, 255, pad_region=10_000)(_item(16, 30))
    assert out["image"].shape[-2:] == (20, 40)
    assert (out["regions"] == 10_000).sum() == 20 * 40 - 16 * 30
    item = _item(16, 30)
    same = TrainAugment(None, None, False)(dict(item))
    assert all(torch.equal(same[k], item[k]) for k in ("image", "target", "regions"))
    with pytest.raises(ValueError, match="scale_range"):
        TrainAugment((2.0, 1.0))


def test_collate_names_mixed_sizes():
    with pytest.raises(ValueError, match=r"different sizes \(16x30, 20x20\).*pool_batch_size=1"):
        collate([_item(16, 30), _item(20, 20)])
    assert collate([_item(16, 30), _item(16, 30)])["image"].shape == (2, 3, 16, 30)
