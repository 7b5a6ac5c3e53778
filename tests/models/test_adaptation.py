"""DomainAdaptationModule: gradient reversal, DANN training, source re-sampling weights."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from alseg.data.shapes import SyntheticShapes
from alseg.data.weights import source_image_weights
from alseg.models.adaptation import (
    AlignSpec,
    DomainAdaptationModule,
    grl_coefficient,
    reverse_gradient,
)
from alseg.models.classification import ClassificationNet
from alseg.models.segmentation import OptimSpec


def test_gradient_reversal_scales_the_upstream_gradient():
    x = torch.randn(5, 3, requires_grad=True)
    upstream = torch.randn(5, 3)
    reverse_gradient(x, 0.37).backward(upstream)
    assert torch.allclose(x.grad, -0.37 * upstream)
    y = torch.randn(4, requires_grad=True)
    out = reverse_gradient(y, 2.0)
    assert torch.equal(out, y)  # identity forward
    assert grl_coefficient(0) == 0.0 and grl_coefficient(10**6) == pytest.approx(1.0)
    assert grl_coefficient(1000) == pytest.approx(2 / (1 + np.exp(-1)) - 1)


def test_source_weights_follow_the_prior():
    pixels = np.array([[10, 0, 0], [10, 0, 0], [10, 0, 0], [0, 5, 0]])  # one class per image
    w = source_image_weights(pixels, np.array([0.5, 0.5, 0.0]))
    # LAMDA: w_i proportional to p_t(y_i) / n_s(y_i): class 0 images 0.5/3 each, class 1 0.5/1
    np.testing.assert_allclose(w / w.sum(), np.array([1, 1, 1, 3]) / 6)
    balanced = source_image_weights(pixels, None)  # classes present: 0 and 1 equally
    np.testing.assert_allclose(balanced / balanced.sum(), np.array([1, 1, 1, 3]) / 6)
    # a sampler with these weights draws class 1 half of the time
    g = torch.Generator().manual_seed(0)
    draws = torch.multinomial(torch.tensor(w), 20000, replacement=True, generator=g)
    assert abs(float((draws == 3).float().mean()) - 0.5) < 0.02


class _Log(pl.Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(trainer.callback_metrics["train/domain_loss"]))


def test_dann_discriminator_loss_falls(tmp_path):
    pl.seed_everything(0, verbose=False)
    src = SyntheticShapes("train", 32, 16, "source")
    tgt = SyntheticShapes("train", 32, 16, "target")

    def loader(ds, key):
        items = [{"image": ds[i]["image"], "mask": ds[i]["mask"]} for i in range(len(ds))]
        return DataLoader(items, batch_size=8, shuffle=True)

    from pytorch_lightning.utilities import CombinedLoader

    data = CombinedLoader(
        {"source": loader(src, "source"), "unlabeled": loader(tgt, "unlabeled")}, "max_size_cycle"
    )
    net = ClassificationNet(6, "resnet18", None, dim=32)
    model = DomainAdaptationModule(
        net,
        6,
        optim=OptimSpec(lr=1e-2),
        align=AlignSpec("dann", disc_hidden=(32, 32), grl_scale=1000.0),
    )
    log = _Log()
    trainer = pl.Trainer(
        max_steps=30,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[log],
        default_root_dir=str(tmp_path),
    )
    trainer.fit(model, train_dataloaders=data)
    first, last = np.mean(log.values[:5]), np.mean(log.values[-5:])
    assert len(log.values) == 30 and last < 0.8 * first, (first, last)
