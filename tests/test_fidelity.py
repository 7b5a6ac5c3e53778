"""Known answers from the official formulas, one per deviation the fidelity audit found
(the stage-2 expansion and the knee have theirs in test_pseudo_labels.py and
test_adaptive.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import tiny_overrides, whole_pool
from rich.console import Console
from torch.utils.data import DataLoader

from alseg.acquisition.base import BatchOutputs, PoolStats, SelectionContext
from alseg.acquisition.passes import AcquisitionCallback
from alseg.acquisition.scorer import PoolScorer
from alseg.acquisition.strategies import get_strategy
from alseg.build import build_loop
from alseg.config import compose
from alseg.data.labels import Annotations, LabelStore
from alseg.data.regions import RegionSet
from alseg.extensions.label_matching import target_distribution
from alseg.models.adaptation import AlignSpec, DomainAdaptationModule, grl_coefficient
from alseg.models.classification import ClassificationNet
from alseg.models.heads import use_cosine_head
from alseg.models.segmentation import OptimSpec, SegmentationModule, TrainSpan, build_network


def _bvsb(p: torch.Tensor) -> torch.Tensor:
    top = p.topk(2, dim=1).values
    return top[:, 1] / top[:, 0]


def test_pixbal_temperature_applies_to_the_raw_cosine_of_a_cosine_head():
    """MulActSeg's acquisition: softmax(cos / 0.1), computed from the model's raw cosine,
    not softmax(logits / 0.1) of logits that are already cos / 0.1."""
    torch.manual_seed(0)
    net = build_network("DeepLabV3Plus", "resnet18", None, 3)
    use_cosine_head(net, 0.1)
    model = SegmentationModule(net, 3).eval()
    images = torch.rand(2, 3, 32, 32)
    regions = torch.arange(16).repeat_interleave(64).view(1, 32, 32).expand(2, -1, -1) % 16
    strategy = get_strategy("pixbal", delta=6.0, temperature=0.1)
    rs = RegionSet([r.numpy() for r in regions])
    scorer = PoolScorer(strategy, rs.num_regions, rs.offsets)
    cb = AcquisitionCallback(scorer, strategy.outputs())
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, callbacks=[cb])
    loader = DataLoader(
        [{"image": images[i], "regions": regions[i], "index": i} for i in range(2)], batch_size=2
    )
    context: dict = {}
    for p in range(2):
        cb.begin(p, context)
        trainer.predict(model, loader, return_predictions=False)
        if p == 0:
            context = strategy.end_pass(0, cb.stats)
    with torch.no_grad():
        cos = model(images) * 0.1  # the raw cosine
    probs = torch.softmax(cos / 0.1, 1)
    w = (1 + 6.0 * probs.mean(dim=(0, 2, 3))) ** -2
    pixel = _bvsb(probs) * w[probs.argmax(1)]
    want = torch.stack([pixel[i][regions[i] == r].mean() for i in range(2) for r in range(16)])
    torch.testing.assert_close(cb.stats.score, want, rtol=1e-4, atol=1e-6)
    # the doubled temperature (T = 0.01 on the cosine) gives a far smaller mean BvSB
    sharp = torch.softmax(cos / 0.01, 1)
    assert _bvsb(sharp).mean() < 0.5 * _bvsb(probs).mean()


def test_a_strategy_temperature_means_the_same_for_linear_and_cosine_heads():
    logits = torch.randn(1, 4, 2, 2)
    regions = torch.zeros(1, 2, 2, dtype=torch.long)
    lab, ids = torch.zeros(1, dtype=torch.bool), torch.arange(1)
    linear = BatchOutputs(logits, regions, 1, lab, ids)  # raw = logits
    cosine = BatchOutputs(logits / 0.1, regions, 1, lab, ids, head_temperature=0.1)
    for T in (0.1, 0.5, None):
        s = get_strategy("entropy", temperature=T)
        a, b = s.region_stats(linear).score, s.region_stats(cosine).score
        if T is None:  # None: the logits as trained (here they differ by the head's T)
            assert not torch.allclose(a, b)
        else:
            torch.testing.assert_close(a, b)


def test_grl_coefficient_ramps_over_the_whole_continuous_run():
    net = ClassificationNet(3, "resnet18", None, dim=16)
    align = AlignSpec("dann", disc_hidden=(8,))
    for offset in (0, 1500, 4000):
        module = DomainAdaptationModule(net, 3, align=align, span=TrainSpan(step_offset=offset))
        assert module.grl_coefficient() == pytest.approx(grl_coefficient(offset, 1000.0))
    assert grl_coefficient(4000) > 0.96  # late selections train with the full reversal


def test_a_void_only_answer_trains_the_void_output():
    store = LabelStore(3, num_classes=2)
    bits = np.array([[False, False, True], [True, False, False], [True, True, False]])
    store.add(
        Annotations(np.arange(3), "multiclass", np.array([255, 0, 255]), np.ones(3), bits=bits), 0
    )
    assert store.region_targets().tolist() == [255, 0, -2]  # void-only: no target ...
    assert store.region_targets(void_class=2).tolist() == [2, 0, -2]  # ... unless void output
    assert store.class_sets(np.arange(3), void_bit=True)[0].tolist() == [False, False, True]


def test_head_learning_rate_covers_decoder_classifier_and_discriminator():
    net = build_network("DeepLabV3Plus", "resnet18", None, 3)
    model = SegmentationModule(net, 3, optim=OptimSpec(lr=1e-3, head_lr_mult=10.0))
    model.trainer = type("T", (), {"estimated_stepping_batches": 10})()  # type: ignore[assignment]
    groups = model.configure_optimizers()["optimizer"].param_groups
    fast = {id(p) for p in groups[1]["params"]}
    assert groups[1]["lr"] == pytest.approx(1e-2)
    assert {id(p) for p in net.decoder.parameters()} <= fast  # ASPP + decoder (MulActSeg)
    assert not {id(p) for p in net.encoder.parameters()} & fast
    cls = ClassificationNet(3, "resnet18", None, dim=16)
    da = DomainAdaptationModule(cls, 3, align=AlignSpec("dann", disc_hidden=(8,)))
    head = {id(p) for p in da.head_parameters()}
    assert {id(p) for p in cls.decoder.parameters()} <= head  # LAMDA's bottleneck
    assert {id(p) for p in da.discriminator.parameters()} <= head  # and discriminator
    assert not {id(p) for p in cls.encoder.parameters()} & head


def test_lamda_kernel_uses_pooled_backbone_features():
    torch.manual_seed(0)
    cls = ClassificationNet(4, "resnet18", None, dim=16)
    model = SegmentationModule(cls, 4).eval()
    strategy = get_strategy("lamda")
    model.configure_prediction(strategy.outputs())
    images = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        out = model.predict_step({"image": images}, 0)
        pooled = cls.encoder(model._input(images))[0]  # (B, 512): un-normalised
    assert out["backbone"].shape == (3, 512, 1, 1)
    regions = torch.zeros(3, 16, 16, dtype=torch.long) + torch.arange(3)[:, None, None]
    batch = BatchOutputs(
        out["logits"], regions, 3, torch.zeros(3, dtype=torch.bool), torch.arange(3),
        backbone=out["backbone"],
    )  # fmt: skip
    stats = strategy.region_stats(batch)
    torch.testing.assert_close(stats.cand.fields["feat"], pooled)


def test_label_estimate_gives_labeled_free_picks_no_weight():
    probs = np.array([[0.9, 0.1, 0.0], [0.0, 0.0, 0.0], [0.2, 0.7, 0.1]])  # row 1: labeled
    est = target_distribution(np.array([2, 0, 0]), probs)
    np.testing.assert_allclose(est, np.array([1 + 2 + 0.9, 1 + 0.7, 1]) / 6.6)


def test_lamda_zeroes_the_probabilities_of_labeled_free_picks():
    s = get_strategy("lamda", confidence=-1.0, max_candidates=10)  # everything is free
    feat = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    fields = {
        "feat": feat,
        "prob": torch.full((6, 2), 0.5),
        "margin": torch.zeros(6),
    }
    labeled = torch.tensor([False, False, False, True, True, True])
    sel = s.pick(fields, SelectionContext(torch.ones(6), labeled, 2.0, torch.Generator()))
    rows = sel.extras["free_rows"]
    lab = labeled.numpy()[rows]
    assert lab.any() and (sel.extras["free_probs"][lab] == 0).all()
    assert (sel.extras["free_probs"][~lab] == 0.5).all()


def test_eada_first_filter_keeps_a_share_of_the_unlabeled_pool():
    # 6 regions: energies 6 > 5 > ... > 1; top-two gaps: the smallest is region 5
    logits = torch.tensor([[6.0, 5.9], [5.0, 1.0], [4.0, 0.0], [3.0, 2.5], [2.0, 1.2], [1.0, 0.99]])
    logits = -logits  # free energy -logsumexp(f): a larger logit is a lower energy
    logits = logits.T.reshape(1, 2, 1, 6)
    regions = torch.arange(6).reshape(1, 1, 6)
    batch = BatchOutputs(logits, regions, 6, torch.zeros(6, dtype=torch.bool), torch.arange(6))
    s = get_strategy("eada", first_ratio=0.5)
    stats = whole_pool(s.region_stats(batch))
    lab = torch.zeros(6, dtype=torch.bool)
    ctx = SelectionContext(torch.ones(6), lab, 1.0, torch.Generator())
    picked = s.select(s.scores(stats, lab, torch.Generator()), stats, ctx)
    energy = stats.regions["energy"]
    top3 = set(torch.topk(energy, 3).indices.tolist())  # half of the pool by energy
    assert picked.ids.item() in top3
    gaps = -stats.score
    assert picked.ids.item() == min(top3, key=lambda i: float(gaps[i]))


def test_ripu_takes_each_image_share_of_the_budget():
    s = get_strategy("ripu")
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1, 0.05])  # image 0 holds the best regions
    stats = PoolStats(
        regions={
            "image": torch.tensor([0, 0, 0, 1, 1, 1]),
            "size": torch.ones(6, dtype=torch.long),
        },
        scored=torch.ones(6, dtype=torch.bool),
        image_scored=torch.ones(2, dtype=torch.bool),
    )
    lab = torch.zeros(6, dtype=torch.bool)
    ctx = SelectionContext(torch.ones(6), lab, 4.0, torch.Generator())
    sel = s.select(scores, stats, ctx)
    assert sorted(sel.ids.tolist()) == [0, 1, 3, 4]  # 2 per image, not the global top 4
    glob = get_strategy("ripu", per_image=False).select(scores, stats, ctx)
    assert sorted(glob.ids.tolist()) == [0, 1, 2, 3]


def test_pixbal_weighs_void_like_any_class():
    probs = torch.tensor([[0.6, 0.1, 0.3]])  # per-image mean softmax, void last
    s = get_strategy("pixbal", delta=6.0, void_class=2)
    stats = PoolStats(
        images={"mean_probs": probs},
        scored=torch.zeros(0, dtype=torch.bool),
        image_scored=torch.tensor([True]),
    )
    w = s.end_pass(0, stats)
    torch.testing.assert_close(w["class_weights"], (1 + 6.0 * probs[0]) ** -2)
    assert w["class_weights"][2] == pytest.approx(1 / (1 + 6 * 0.3) ** 2)


# merged regions, every labeled region large enough to sieve
SIEVING = (
    "active.strategy=adaptive_sizebal",
    "sieve.enabled=true",
    "sieve.min_pixels=8",
    "sieve.min_size=1",
)


def test_sieving_resieves_every_label_of_every_round(tmp_path):
    overrides = tiny_overrides(tmp_path, *SIEVING)
    out = tmp_path / "run"
    loop = build_loop(
        compose(overrides), out, resume=False, console=Console(quiet=True), progress=False
    )
    loop.run()
    import json

    first = json.loads((out / "sieve" / "round_01" / "manifest.json").read_text())
    second = json.loads((out / "sieve" / "round_02" / "manifest.json").read_text())
    # round 2 sieves the regions of rounds 0-2: more queries, and every image of round 1's
    # masks again (with the newer model)
    assert second["stats"]["sieve_regions"] > first["stats"]["sieve_regions"]
    assert set(first["files"]) <= set(second["files"])
    round0 = np.load(out / "labels" / "round_00.npz")["round"] == 0
    images0 = set(np.unique(loop.dm.regions.image_of(np.flatnonzero(round0))).tolist())
    assert {f"{i:06d}.png" for i in images0} & set(first["files"])  # round-0 regions too
    assert math.isfinite(second["stats"]["sieve_kept_acc"])


def test_sieve_scope_new_sieves_each_label_once_and_keeps_earlier_masks(tmp_path):
    """``sieve.scope=new`` (the ablation of the official timing): round r sieves only round
    r's answers, with round r - 1's model, and the targets keep every earlier round's
    masks; a resumed run reads the same folders."""
    import json

    overrides = tiny_overrides(tmp_path, *SIEVING, "sieve.scope=new")
    out = tmp_path / "run"
    cfg = compose(overrides)
    loop = build_loop(cfg, out, resume=False, console=Console(quiet=True), progress=False)
    loop.run()
    labels = np.load(out / "labels" / "round_02.npz")
    ids = np.arange(labels["round"].size)
    root = np.where(labels["query"] >= 0, labels["query"], ids)
    for r in (1, 2):
        manifest = json.loads((out / "sieve" / f"round_{r:02d}" / "manifest.json").read_text())
        mine = labels["round"] == r
        # only the round's own queries (at most all of them), never an earlier round's
        assert 0 < manifest["stats"]["sieve_regions"] <= np.unique(root[mine]).size
        own = set(np.unique(loop.dm.regions.image_of(ids[mine])).tolist())
        assert {int(f[:-4]) for f in manifest["files"]} <= own
    assert [p.name for p in loop.dm.labeled.steps["sieve"].folders] == ["round_01", "round_02"]
    resumed = build_loop(cfg, out, resume=True, console=Console(quiet=True), progress=False)
    resumed.run()
    assert [p.name for p in resumed.dm.labeled.steps["sieve"].folders] == ["round_01", "round_02"]
