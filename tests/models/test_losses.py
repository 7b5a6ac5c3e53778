"""Multi-class label losses: known answers and a per-region loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from alseg.models.heads import CosineClassifier, use_cosine_head
from alseg.models.losses import merged_positive_loss, multiclass_loss, prototypical_pixel_loss
from alseg.models.segmentation import build_network


def test_merged_positive_known_answer():
    # one image, 2 pixels, 3 classes; pixel 0 may be {0, 1}, pixel 1 has no candidate
    p0 = torch.tensor([0.5, 0.3, 0.2])
    logits = torch.stack([p0.log(), torch.zeros(3)], 1).view(1, 3, 1, 2)
    cand = torch.zeros(1, 3, 1, 2, dtype=torch.bool)
    cand[0, :2, 0, 0] = True
    assert merged_positive_loss(logits, cand).item() == pytest.approx(-math.log(0.8), rel=1e-6)
    # temperature divides the logits first
    t = merged_positive_loss(logits, cand, temperature=0.5).item()
    q = torch.softmax(p0.log() / 0.5, 0)
    assert t == pytest.approx(-math.log(q[0] + q[1]), rel=1e-5)
    assert merged_positive_loss(logits, torch.zeros_like(cand)).item() == 0.0


def test_prototypical_known_answer():
    # region 0 has pixels with p_1 = 0.2 and 0.6 -> -log 0.6; p_0 max = 0.7 -> -log 0.7
    probs = torch.tensor([[0.7, 0.1], [0.2, 0.6], [0.1, 0.3]])  # (C, pixels)
    logits = probs.log().view(1, 3, 1, 2)
    regions = torch.zeros(1, 1, 2, dtype=torch.long)
    rc = torch.tensor([[[True, True, False]]])  # (N, R, C)
    want = (-math.log(0.7) - math.log(0.6)) / 2
    assert prototypical_pixel_loss(logits, regions, rc).item() == pytest.approx(want, rel=1e-5)
    one_hot = torch.tensor([[[True, False, False]]])
    assert prototypical_pixel_loss(logits, regions, one_hot).item() == 0.0  # multi_only
    assert prototypical_pixel_loss(
        logits, regions, one_hot, multi_only=False
    ).item() == pytest.approx(-math.log(0.7), rel=1e-5)


def loop_losses(logits, regions, region_classes, T):
    """Per-region, per-class Python loops (the obvious implementation)."""
    N, C, H, W = logits.shape
    p = torch.softmax(logits / T, 1)
    mp_terms, pp_terms = [], []
    for n in range(N):
        for r in range(region_classes.shape[1]):
            cls = region_classes[n, r].nonzero().squeeze(1).tolist()
            pix = (regions[n] == r).nonzero().tolist()
            if len(cls) < 2 or not pix:
                continue
            for y, x in pix:
                mp_terms.append(-torch.log(p[n, cls, y, x].sum()))
            for c in cls:
                pp_terms.append(-torch.log(max(p[n, c, y, x] for y, x in pix)))
    return torch.stack(mp_terms).mean(), torch.stack(pp_terms).mean()


@pytest.mark.parametrize("T", [1.0, 0.5])
def test_losses_equal_loop_reference(T):
    g = torch.Generator().manual_seed(0)
    N, C, H, W, R = 2, 4, 6, 5, 7
    logits = torch.randn(N, C, H, W, generator=g) * 2
    regions = torch.randint(0, R, (N, H, W), generator=g)
    rc = torch.rand(N, R, C, generator=g) < 0.5
    mp_ref, pp_ref = loop_losses(logits, regions, rc, T)
    multi = rc & (rc.sum(-1) >= 2)[..., None]
    cand = torch.stack([multi[n][regions[n]] for n in range(N)]).permute(0, 3, 1, 2)
    torch.testing.assert_close(merged_positive_loss(logits, cand, T), mp_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        prototypical_pixel_loss(logits, regions, rc, T), pp_ref, rtol=1e-5, atol=1e-6
    )
    parts = multiclass_loss(logits, torch.full((N, H, W), 255), regions, rc, (16, 8, 1), T)
    torch.testing.assert_close(parts["mp"], mp_ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(parts["loss"], 8 * mp_ref + 1 * pp_ref, rtol=1e-5, atol=1e-6)


def test_weights_switch_terms_off_and_gradients_flow():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g, requires_grad=True)
    regions = torch.zeros(1, 4, 4, dtype=torch.long)
    regions[0, 2:] = 1
    rc = torch.tensor([[[True, True, False], [False, False, True]]])
    target = torch.where(regions == 1, torch.tensor(2), torch.tensor(255))
    parts = multiclass_loss(logits, target, regions, rc, (16, 0, 0))
    assert parts["loss"].item() == pytest.approx(16 * parts["ce"].item())
    parts = multiclass_loss(logits, target, regions, rc)
    parts["loss"].backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_cosine_head():
    head = CosineClassifier(4, 3, temperature=0.1)
    x = torch.randn(2, 4, 5, 5)
    out = head(x)
    assert out.shape == (2, 3, 5, 5) and out.abs().max() <= 10 + 1e-4  # |cos| / 0.1
    torch.testing.assert_close(head(x * 7), out)  # invariant to feature scale
    net = use_cosine_head(build_network("DeepLabV3Plus", "resnet18", None, 3))
    assert isinstance(net.segmentation_head[0], CosineClassifier)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 3, 32, 32)


def test_the_labeling_type_chooses_the_training_loss():
    """ModelSpec.loss: tags -> the tag loss, multi-class answers -> MulActSeg's losses (the
    pixel cross-entropy on a batch without answers: stage 2's pseudo labels), otherwise the
    pixel cross-entropy; each equals the formula it names."""
    from alseg.models.factory import ModelSpec
    from alseg.models.losses import MultiClassAnswers, PixelCrossEntropy, masked_cross_entropy
    from alseg.models.specs import OptimSpec, TagSpec
    from alseg.weak.cam import ImageTagLoss, tag_loss

    spec = ModelSpec("DeepLabV3Plus", "resnet18", None, 3, ("a", "b", "c"), OptimSpec())
    tags = TagSpec("gmp")
    assert spec.loss(tags) == ImageTagLoss(tags, 3)
    assert spec.loss(None) == PixelCrossEntropy(255)
    multi = ModelSpec(**{**spec.__dict__, "multiclass": True, "void_output": True})
    assert multi.loss(None) == MultiClassAnswers((16.0, 8.0, 1.0), 4, 255)

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 4, 4, generator=g)
    target = torch.randint(0, 3, (2, 4, 4), generator=g)
    target[0, 0] = 255
    ce = masked_cross_entropy(logits, target, 255)
    assert PixelCrossEntropy()(logits, {"target": target})["loss"] == ce
    assert multi.loss(None)(logits, {"target": target}) == {"loss": ce}  # no answers
    regions = torch.zeros(2, 4, 4, dtype=torch.long)
    regions[:, 2:] = 1
    rc = torch.zeros(2, 3, 4, dtype=torch.bool)
    rc[:, 0, :2], rc[:, 1, 2] = True, True
    batch = {"target": target, "regions": regions, "region_classes": rc}
    parts = multi.loss(None)(logits, batch)
    expected = multiclass_loss(logits, target, regions, rc, (16.0, 8.0, 1.0))
    assert set(parts) == {"ce", "mp", "pp", "loss"}
    assert all(torch.equal(parts[k], expected[k]) for k in parts)
    image_tags = rc[:, :1, :3]  # region 0 holds the image's tags
    got = ImageTagLoss(tags, 3)(logits, {"target": target, "region_classes": image_tags})
    assert torch.equal(got["loss"], tag_loss(logits[:, :3].amax((2, 3)), image_tags[:, 0]))
