import math

import numpy as np
import pytest
import torch

from alseg.acquisition import scores as S


def logits_of(*probs: float) -> torch.Tensor:
    """(1, C) logits whose softmax is ``probs``."""
    return torch.tensor([probs], dtype=torch.float64).log()


def test_known_answers_on_one_distribution():
    lg = logits_of(0.7, 0.2, 0.1)
    ent = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert S.entropy(lg).item() == pytest.approx(ent, abs=1e-6)
    assert S.entropy(lg, normalize=True).item() == pytest.approx(ent / math.log(3), abs=1e-6)
    assert S.margin(lg).item() == pytest.approx(1 - (0.7 - 0.2), abs=1e-6)
    assert S.bvsb(lg).item() == pytest.approx(0.2 / 0.7, abs=1e-6)
    assert S.least_confidence(lg).item() == pytest.approx(0.3, abs=1e-6)


def test_uniform_is_maximal_and_one_hot_minimal():
    uniform = torch.zeros(1, 4)
    assert S.entropy(uniform).item() == pytest.approx(math.log(4), abs=1e-6)
    assert S.bvsb(uniform).item() == pytest.approx(1.0)
    assert S.margin(uniform).item() == pytest.approx(1.0)
    sure = torch.tensor([[30.0, 0.0, 0.0, 0.0]])
    for fn in (S.entropy, S.margin, S.bvsb, S.least_confidence):
        assert fn(sure).item() == pytest.approx(0.0, abs=1e-6)
        assert fn(sure).item() < fn(uniform).item()


def test_temperature_sharpens():
    lg = logits_of(0.6, 0.4)
    # T = 0.1 multiplies logits by 10: p2/p1 = (0.4/0.6)^10
    assert S.bvsb(lg, temperature=0.1).item() == pytest.approx((0.4 / 0.6) ** 10, rel=1e-5)


def test_segmentation_shapes_and_class_axis():
    lg = torch.randn(2, 5, 3, 4)
    for fn in (S.entropy, S.margin, S.bvsb, S.least_confidence):
        out = fn(lg)
        assert out.shape == (2, 3, 4)
        # per-pixel value equals the value on the pixel's class vector
        assert out[1, 2, 3].item() == pytest.approx(fn(lg[1, :, 2, 3][None]).item(), abs=1e-6)


def test_bald_on_hand_made_samples():
    # two MC samples that disagree completely: H[mean] = log 2, mean H = 0 -> BALD = log 2
    samples = torch.tensor([[[40.0, -40.0], [-40.0, 40.0]]]).permute(0, 2, 1)  # (1, C=2, T=2)
    assert S.bald(samples).item() == pytest.approx(math.log(2), abs=1e-5)
    # identical samples carry no mutual information
    same = torch.tensor([[1.0, 2.0, 3.0]]).T[None].expand(1, 3, 5)
    assert S.bald(same).item() == pytest.approx(0.0, abs=1e-6)


def test_bald_matches_textbook_formula():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 4, 6, 7))  # (N, C, H=6, T=7)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    mean_p = p.mean(-1)
    textbook = -(mean_p * np.log(mean_p)).sum(1) + (p * np.log(p)).sum(1).mean(-1)
    np.testing.assert_allclose(S.bald(torch.tensor(logits)).numpy(), textbook, atol=1e-5)
