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


def test_recovers_true_labels_inside_and_in_whole_neighbouring_regions():
    feats, probs, regions, rc, labeled, truth = scene()
    pl = propagate_pseudo_labels(feats, probs, regions, rc, labeled)
    inside = regions == 0
    assert torch.equal(pl[inside], truth[inside])  # intra-region localisation
    # the whole neighbouring regions (columns 0-1 and 6-7) are candidates, not only the
    # one-pixel ring next to region 0 (columns 1 and 6): pixels two columns away are
    # assigned too, and whatever is assigned is right
    far = torch.zeros_like(inside)
    far[:, 0] = True
    far[:, 7] = True
    assert (pl[far] != 255).any()
    assigned = ~inside & (pl != 255)
    assert torch.equal(pl[assigned], truth[assigned])


def reference(feats, probs, regions, rc, labeled):
    """The official procedure, literally: a loop over labeled regions in id order, the
    3x3 dilation of each region's mask, its neighbours' pixels, 'any prototype above its
    median threshold', later regions overwriting earlier ones, intra labels last."""
    from scipy.ndimage import binary_dilation

    D, H, W = feats.shape
    f = feats.reshape(D, -1).T
    p = probs.reshape(probs.shape[0], -1).T
    r = regions.reshape(-1)
    out = torch.full((H * W,), 255, dtype=torch.long)
    protos, intra = {}, {}
    for s in range(rc.shape[0]):
        classes = rc[s].nonzero().squeeze(1).tolist()
        if not labeled[s] or not classes:
            continue
        px = (r == s).nonzero().squeeze(1)
        P = [px[int(p[px, c].argmax())] for c in classes]  # first max pixel per class
        sim = f[px] @ f[torch.stack(P)].T  # (n, k)
        best = sim.argmax(1)
        thr = []
        for k in range(len(classes)):
            mine = sim[best == k, k]
            thr.append(float(mine.sort().values[(len(mine) - 1) // 2]) if len(mine) else 1.0)
        protos[s] = (torch.stack(P), classes, torch.tensor(thr))
        intra[s] = (px, torch.tensor(classes)[best])
    for s, (P, classes, thr) in sorted(protos.items()):
        grown = binary_dilation((regions == s).numpy(), structure=torch.ones(3, 3).numpy())
        nbrs = torch.unique(regions[torch.from_numpy(grown)])
        px = torch.isin(r, nbrs).nonzero().squeeze(1)
        sim = f[px] @ f[P].T
        ok = (sim > thr[None]).any(1)
        out[px[ok]] = torch.tensor(classes)[sim[ok].argmax(1)]
    for px, cls in intra.values():
        out[px] = cls
    return out.view(H, W)


def test_equals_a_literal_loop_of_the_official_procedure():
    g = torch.Generator().manual_seed(1)
    for trial in range(20):
        H, W, C, D = 12, 14, 4, 5
        # blocky regions (a coarse random map, upsampled) so that regions have neighbours
        coarse = torch.randint(0, 9, (4, 5), generator=g)
        regions = coarse.repeat_interleave(3, 0).repeat_interleave(3, 1)[:H, :W]
        regions = torch.unique(regions, return_inverse=True)[1]
        R = int(regions.max()) + 1
        feats = F.normalize(torch.randn(D, H, W, generator=g), dim=0)
        probs = torch.softmax(torch.randn(C, H, W, generator=g) * 3, 0)
        rc = torch.rand(R, C, generator=g) < 0.4
        labeled = torch.rand(R, generator=g) < 0.5
        got = propagate_pseudo_labels(feats, probs, regions, rc, labeled)
        assert torch.equal(got, reference(feats, probs, regions, rc, labeled)), trial


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


def test_stage2_features_are_normalised_then_upsampled_as_the_official_head():
    """MulActSeg's cosine head (DeepLabHeadV3PlusWN) L2-normalises its stride-4 features and
    feat_forward upsamples them bilinearly, not normalised again: similarities are dot
    products of the upsampled unit vectors."""
    import torch.nn.functional as F

    from alseg.extensions.stage2 import stage2_features

    torch.manual_seed(0)
    feats = torch.randn(1, 4, 3, 3)
    got = stage2_features(feats, (12, 12))
    want = F.interpolate(F.normalize(feats, dim=1), size=(12, 12), mode="bilinear")
    assert torch.allclose(got, want)
    norms = got.norm(dim=1)
    assert norms.max() <= 1 + 1e-6 and norms.min() < 0.99  # between cells: shorter than 1
