"""The linear probe on region embeddings (alseg.probe): known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alseg.probe import embed_regions, fit_probe, image_halves, linear_probe, probe_scores


def test_probe_scores_by_hand():
    counts = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0], [3, 0, 5]])  # the void region drops
    pred = np.array([0, 0, 2, 2])
    s = probe_scores(pred, counts)
    # pixels of the predicted class: 8 + 1 + 5 of 28 valid
    assert s["pixel_acc"] == pytest.approx(100 * 14 / 28)
    assert s["region_acc"] == pytest.approx(100 * 2 / 3)  # dominant 0, 1, 2: hits 0 and 2
    assert s["class_acc"] == pytest.approx(100 * (1 + 0 + 1) / 3)


def test_fit_probe_separates_separable_classes():
    g = torch.Generator().manual_seed(0)
    centers = torch.eye(3) * 4
    y = torch.arange(3).repeat_interleave(20)
    x = centers[y] + 0.3 * torch.randn(60, 3, generator=g)
    probe = fit_probe(x, y, 3)
    assert (probe(x).argmax(1) == y).all()


def test_linear_probe_fits_one_half_of_the_images_and_scores_the_other():
    # 6 images of 2 regions each; embeddings name the class exactly, except a void region
    offsets = np.arange(0, 14, 2)
    counts = np.zeros((12, 2), dtype=np.int64)
    counts[0::2, 0] = 10
    counts[1::2, 1] = 10
    counts[5] = 0  # void only: neither fitted nor scored
    x = torch.tensor(counts > 0, dtype=torch.float32)
    res = linear_probe(x, counts, offsets, seed=0)
    fit, test = image_halves(6, 0)
    assert set(fit).isdisjoint(test) and len(fit) == len(test) == 3
    expected_scored = sum(int((counts[2 * i : 2 * i + 2].sum(1) > 0).sum()) for i in test)
    assert res["scored_regions"] == expected_scored
    assert res["fit_regions"] + res["scored_regions"] == 11
    assert res["pixel_acc"] == 100.0


def test_embed_regions_is_the_normalised_mean_of_upsampled_deepest_features():
    class Model(torch.nn.Module):
        def forward_all(self, image):  # a 2x2 "deepest" map: the image's first channel, pooled
            return {"backbone": torch.nn.functional.avg_pool2d(image, 2)}

    class Regions:
        num_regions = np.array([2])

        def map_tensor(self, i):
            return torch.tensor([[0, 0, 1, 1]] * 2 + [[1, 1, 1, 1]] * 2)

    image = torch.arange(48, dtype=torch.float32).reshape(3, 4, 4)
    x = embed_regions(Model(), [{"image": image, "index": 0}], Regions())
    cells = torch.nn.functional.avg_pool2d(image, 2)  # (3, 2, 2)
    up = cells.repeat_interleave(2, 1).repeat_interleave(2, 2)  # nearest upsampling
    m = Regions().map_tensor(0)
    slow = torch.stack([up[:, m == r].mean(1) for r in range(2)])  # loop over regions
    assert torch.allclose(x, torch.nn.functional.normalize(slow, dim=1), atol=1e-6)
