import numpy as np
import pytest
import torch

from alseg.data.shapes import SyntheticShapes, class_frequencies


def test_label_shift_reverses_class_frequencies():
    src, tgt = class_frequencies(6, "source", 0.5), class_frequencies(6, "target", 0.5)
    assert np.allclose(src, tgt[::-1]) and np.isclose(src.sum(), 1.0)
    assert np.allclose(src[1:] / src[:-1], 0.5)  # r = 1 - imbalance
    assert np.allclose(class_frequencies(6, "target", 0.0), 1 / 6)


def test_gap_blends_the_target_look_towards_the_source_look():
    def brightness(ds):
        return ds.images.float().mean().item() / 255

    source = SyntheticShapes("train", 120, 16, "source", seed=3, imbalance=0.5)
    looks = {g: SyntheticShapes("train", 120, 16, "target", 3, 0.5, gap=g) for g in (0, 0.5, 1)}
    full = SyntheticShapes("train", 120, 16, "target", 3, 0.5)
    # gap=1 (the default) renders the data set of before the gap option, draw for draw:
    # checksums of these images made by that generator (commit 30b2613)
    x = full.images.to(torch.int64)
    w = torch.arange(x.numel(), dtype=torch.int64).reshape(x.shape) % 1009
    assert (int(x.sum()), int((x * w).sum())) == (8442336, 4247641432)
    assert full.images[7, :, 5, 9].tolist() == [82, 84, 90]
    # the labels never depend on the gap
    assert all(np.array_equal(d.labels, full.labels) for d in looks.values())
    # the dark target look brightens monotonically towards the light source look
    b = [brightness(looks[g]) for g in (1, 0.5, 0)]
    assert b[0] < b[1] < b[2] and abs(b[2] - brightness(source)) < 0.06
    # no blur and no pixel noise at gap=0: the shape is one flat colour on a flat background
    img = looks[0].images[0].reshape(3, -1)
    assert len(torch.unique(img, dim=1)[0]) <= 2
    assert "gap0.5" in looks[0.5].fingerprint and "gap" not in full.fingerprint


def test_gap_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="gap=1.5 must be in"):
        SyntheticShapes("train", 4, 16, "target", gap=1.5)


def test_segmentation_masks_are_silhouettes_on_a_background():
    cls = SyntheticShapes("train", 12, 32, "target", 0, 0.0)
    seg = SyntheticShapes("train", 12, 32, "target", 0, 0.0, segmentation=True)
    assert torch.equal(cls.images, seg.images)  # the same pictures
    assert seg.num_classes == 7 and seg.class_names[0] == "background"
    assert cls.num_classes == 6 and SyntheticShapes.num_classes == 6  # class attribute intact
    for i in range(12):
        m, c = seg.mask(i), int(cls.labels[i])
        assert set(m.unique().tolist()) == {0, c + 1}
        inside = m > 0
        assert 0.03 < inside.float().mean() < 0.5
        # the shape's pixels differ from the background's in colour
        img = seg.images[i].float()
        assert (img[:, inside].mean(1) - img[:, ~inside].mean(1)).abs().max() > 10
    assert seg.fingerprint != cls.fingerprint
