"""SegmentationModule on inputs whose sides are not multiples of 32 (VOC, resized folders)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alseg.models.segmentation import OptimSpec, SegmentationModule, build_network


def test_any_input_size_is_padded_and_cropped_back():
    torch.manual_seed(0)
    model = SegmentationModule(build_network("DeepLabV3Plus", "resnet18", None, 3), 3).eval()
    image = torch.rand(2, 3, 37, 50)
    with torch.no_grad():
        logits = model(image)
        feats, logits2 = model.forward_features(image)
        # the same as padding by hand (normalised zeros = mean colour) and cropping
        x = F.pad((image - model.mean) / model.std, (0, 14, 0, 27))
        ref = model.network(x)[..., :37, :50]
    assert logits.shape == (2, 3, 37, 50) and torch.allclose(logits, ref, atol=1e-5)
    assert torch.allclose(logits2, logits, atol=1e-5)
    assert feats.shape[-2:] == (10, 13)  # ceil(37 / 4), ceil(50 / 4) at stride 4
    even = torch.rand(1, 3, 32, 64)
    with torch.no_grad():
        assert torch.equal(model(even), model.network((even - model.mean) / model.std))


def test_classifier_learning_rate_factor_and_sgd():
    import pytest

    net = build_network("DeepLabV3Plus", "resnet18", None, 3)
    model = SegmentationModule(net, 3, optim=OptimSpec("sgd", lr=2e-5, head_lr_mult=10.0))
    model.trainer = type("T", (), {"estimated_stepping_batches": 100})()  # type: ignore[assignment]
    opt = model.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    lrs = [g["lr"] for g in opt.param_groups]
    assert lrs == pytest.approx([2e-5, 2e-4])
    # MulActSeg trains the whole DeepLabV3+ head (ASPP, decoder, classifier) at 10x
    head = {id(p) for m in (net.decoder, net.segmentation_head) for p in m.parameters()}
    assert {id(p) for p in opt.param_groups[1]["params"]} == head
    n = sum(len(g["params"]) for g in opt.param_groups)
    assert n == len(list(model.parameters()))
    with pytest.raises(ValueError, match="choose one of"):
        OptimSpec(optimizer="adam")
