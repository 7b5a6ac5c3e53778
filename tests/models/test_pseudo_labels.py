"""Stage-2 pseudo labels on a constructed image with clear feature clusters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alseg.models.pseudo_labels import _group_lower_median, propagate_pseudo_labels


def scene():
    """8x8 image: left half class 0, right half class 1 (feature clusters e0 / e1).
    Regions: 0 = columns 2-5 (straddles both classes, labeled {0, 1}), 1 = columns 0-1,
    2 = columns 6-7 (unlabeled neighbours)."""
    H = W = 8
    truth = torch.zeros(H, W, dtype=torch.long)
    truth[:, 4:] = 1
    feats = torch.zeros(3, H, W)
    feats[0][truth == 0] = 1.0
    feats[1][truth == 1] = 1.0
    g = torch.Generator().manual_seed(0)
    feats = F.normalize(feats + 0.05 * torch.randn(3, H, W, generator=g), dim=0)
    probs = torch.stack([(truth == 0).float() * 0.8 + 0.1, (truth == 1).float() * 0.8 + 0.1])
    regions = torch.zeros(H, W, dtype=torch.long)
    regions[:, :2] = 1
    regions[:, 6:] = 2
    rc = torch.tensor([[True, True], [False, False], [False, False]])
    labeled = torch.tensor([True, False, False])
    return feats, probs, regions, rc, labeled, truth


def test_recovers_true_labels_inside_and_next_to_the_labeled_region():
    feats, probs, regions, rc, labeled, truth = scene()
    pl = propagate_pseudo_labels(feats, probs, regions, rc, labeled)
    inside = regions == 0
    assert torch.equal(pl[inside], truth[inside])  # intra-region localisation
    # the columns touching the labeled region (1 and 6) are expanded where similar
    # enough; whatever is assigned there is right, and something is assigned
    nb = torch.zeros_like(inside)
    nb[:, 1] = True
    nb[:, 6] = True
    assigned = nb & (pl != 255)
    assert assigned.any() and torch.equal(pl[assigned], truth[assigned])
    # pixels not adjacent to a labeled region stay unassigned
    far = torch.zeros_like(inside)
    far[:, 0] = True
    far[:, 7] = True
    assert (pl[far] == 255).all()


def test_nothing_labeled_gives_ignore_and_one_hot_regions_fill_their_class():
    feats, probs, regions, rc, labeled, truth = scene()
    assert (
        propagate_pseudo_labels(feats, probs, regions, rc, torch.zeros(3, dtype=torch.bool)) == 255
    ).all()
    one_hot = torch.tensor([[False, False], [True, False], [False, False]])
    pl = propagate_pseudo_labels(feats, probs, regions, one_hot, torch.tensor([False, True, False]))
    assert (pl[regions == 1] == 0).all()


def test_group_lower_median():
    vals = torch.tensor([5.0, 1.0, 3.0, 2.0, 9.0, 4.0])
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    out = _group_lower_median(vals, groups, 3)
    assert out[:2].tolist() == [3.0, 4.0] and out[2].isnan()
