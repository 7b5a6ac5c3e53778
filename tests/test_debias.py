"""Debiasing (alseg.debias): LWBC's weights, committee and losses against literal
re-computations of the official code; LfF, GroupDRO and the group metrics by known
answers; the embedded and real data layouts; short end-to-end runs of every method."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from alseg.cli import main
from alseg.config import ConfigError, compose
from alseg.data.datasets import DataError
from alseg.debias.data import ColoredShapes, WaterbirdShapes, aligned_bias, check_groups
from alseg.debias.heads import StackedMLP, mlp_head
from alseg.debias.layouts import CelebAGroups, GroupFolder, WaterbirdsGroups
from alseg.debias.losses import (
    LossEMA,
    bootstrap_masks,
    committee_agreement,
    committee_loss,
    generalized_ce,
    group_dro_update,
    lff_weights,
    lwbc_weights,
)
from alseg.debias.metrics import GroupAccuracy
from alseg.debias.modules import LWBC, CommitteeSpec, HeadSpec
from alseg.rundir import RunDir


# -- LWBC's formulas ---------------------------------------------------------------------------
def test_weight_formula_known_answer():
    labels = torch.tensor([0, 1, 2])
    # 4 members, 3 samples, 3 classes: sample 0 right for 3 members, sample 1 for 0, sample 2 for 4
    preds = torch.tensor([[0, 0, 2], [0, 2, 2], [0, 0, 2], [1, 0, 2]])
    logits = F.one_hot(preds, 3).float()
    agreement = committee_agreement(logits, labels)
    assert agreement.tolist() == [0.75, 0.0, 1.0]
    w = lwbc_weights(agreement, alpha=0.02)
    assert torch.allclose(w, torch.tensor([1 / 0.77, 1 / 0.02, 1 / 1.02]))


def test_stacked_committee_equals_a_loop_over_members():
    torch.manual_seed(0)
    for bias in (False, True):
        stacked = StackedMLP(members=5, in_dim=12, hidden=8, out_dim=3, bias=bias)
        x = torch.randn(7, 12)
        out = stacked(x)
        loop = torch.stack([stacked.member(m)(x) for m in range(5)])
        assert out.shape == (5, 7, 3)
        assert torch.allclose(out, loop, atol=1e-6)
    linear = StackedMLP(members=3, in_dim=4, hidden=None, out_dim=2)
    x = torch.randn(2, 4)
    assert torch.allclose(linear(x), torch.stack([linear.member(m)(x) for m in range(3)]))


def test_stacked_init_matches_nn_linear_range():
    stacked = StackedMLP(members=50, in_dim=64, hidden=32, out_dim=4)
    w1, w2 = stacked.weights
    assert w1.abs().max() <= 1 / 8 and w1.abs().max() > 0.12  # uniform in +-1/sqrt(64)
    assert w2.abs().max() <= 1 / np.sqrt(32)


def test_bootstrap_masks_draw_set_size_times_classes_with_replacement():
    g = torch.Generator().manual_seed(0)
    masks = bootstrap_masks(1000, num_classes=4, members=30, set_size=50, generator=g)
    assert masks.shape == (30, 1000) and masks.dtype == torch.bool
    # 200 draws with replacement: fewer distinct samples, expected 1000 (1 - (1 - 1/1000)^200)
    per_member = masks.sum(1).float()
    assert (per_member <= 200).all() and (per_member < 200).any()
    expected = 1000 * (1 - (1 - 1 / 1000) ** 200)
    assert abs(per_member.mean().item() - expected) < 3
    again = bootstrap_masks(1000, 4, 30, 50, torch.Generator().manual_seed(0))
    assert torch.equal(masks, again)
    other = bootstrap_masks(1000, 4, 30, 50, torch.Generator().manual_seed(1))
    assert not torch.equal(masks, other)


def _official_committee_loss(outputs, labels, masks, target_outputs, kd_lambda, kd_t):
    """The committee loss of the official LWBC_celebA.py, member by member."""
    kl_loss = torch.nn.KLDivLoss(reduction="none")
    loss = 0
    for i in range(len(outputs)):
        if masks[i].sum() > 0:
            loss += (
                F.cross_entropy(outputs[i], labels, reduction="none") * masks[i]
            ).sum() / masks[i].sum()
    if target_outputs is None:
        return loss
    kl_outputs = F.softmax(target_outputs.detach() / kd_t, dim=1)
    loss = loss * (1 - kd_lambda)
    for i in range(len(outputs)):
        kd_loss_ = kl_loss(F.log_softmax(outputs[i] / kd_t, dim=1), kl_outputs) * (
            ~masks[i][..., None]
        )
        loss += kd_lambda * kd_loss_.mean() * kd_t**2
    return loss


def test_committee_loss_equals_the_official_member_loop():
    torch.manual_seed(1)
    M, B, C = 6, 10, 3
    outputs = torch.randn(M, B, C, requires_grad=True)
    labels = torch.randint(C, (B,))
    masks = torch.rand(M, B) < 0.3
    masks[2] = False  # a member without in-bag samples in this batch
    main = torch.randn(B, C) * 3
    for target, lam in ((None, 0.6), (main, 0.6), (main, 0.9)):
        ours = committee_loss(outputs, labels, masks, target, lam, 2.5)
        ref = _official_committee_loss(outputs, labels, masks, target, lam, 2.5)
        assert torch.allclose(ours, ref, atol=1e-5)
        g1 = torch.autograd.grad(ours, outputs)[0]
        g2 = torch.autograd.grad(ref, outputs)[0]
        assert torch.allclose(g1, g2, atol=1e-6)


def test_lwbc_training_equals_the_official_loop():
    """Two epochs of the Lightning module (warm-up 0: epoch 1 trains committee + main,
    epoch 2 adds distillation) give the parameters of the official per-member loop."""
    torch.manual_seed(0)
    N, D, C, M = 40, 16, 3, 4
    x, y = torch.randn(N, D), torch.randint(C, (N,))
    b = torch.randint(2, (N,))
    spec = HeadSpec(D, 8, C, 2, temperature=4.0, lr=1e-2)
    c = CommitteeSpec(
        members=M, set_size=3, alpha=0.02, kd_lambda=0.6, kd_temperature=2.0, warmup=0
    )
    masks = bootstrap_masks(N, C, M, c.set_size, torch.Generator().manual_seed(0))
    module = LWBC(spec, np.arange(C) % 2, committee=c, in_bag=masks)
    members = [module.committee.member(m) for m in range(M)]
    main = mlp_head(D, 8, C)
    main.load_state_dict(module.main.state_dict())

    def loader():
        ds = TensorDataset(x, y, b, torch.arange(N))
        return DataLoader(
            ds, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3)
        )

    trainer = pl.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, loader())

    opt = torch.optim.Adam([p for m in members for p in m.parameters()], lr=1e-2)
    opt_main = torch.optim.Adam(main.parameters(), lr=1e-2)
    batches = loader()
    for epoch in range(2):
        for xb, yb, _bb, ib in batches:
            opt.zero_grad()
            opt_main.zero_grad()
            outputs = [m(xb) * 4.0 for m in members]
            mask = [masks[m, ib] for m in range(M)]
            weight = 1 / (
                torch.stack([o.argmax(1).eq(yb) for o in outputs]).float().sum(0) / M + 0.02
            )
            target_loss = (F.cross_entropy(main(xb) * 4.0, yb, reduction="none") * weight).mean()
            target_loss.backward()
            opt_main.step()
            target = main(xb) * 4.0 if epoch + 1 > 1 else None
            loss = _official_committee_loss(outputs, yb, mask, target, 0.6, 2.0)
            loss.backward()
            opt.step()
    for m in range(M):
        ours = module.committee.member(m)
        for p, q in zip(ours.parameters(), members[m].parameters()):
            assert torch.allclose(p, q, atol=1e-5)
    for p, q in zip(module.main.parameters(), main.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


# -- LfF, GroupDRO -----------------------------------------------------------------------------
def test_generalized_ce_is_q_times_the_gradient_of_its_definition():
    """The official form CE * p_y^q * q (p_y detached) has q times the gradient of the
    paper's GCE (1 - p_y^q) / q."""
    torch.manual_seed(0)
    logits = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    q = 0.7
    g1 = torch.autograd.grad(generalized_ce(logits, y, q).sum(), logits)[0]
    p_y = F.softmax(logits, 1).gather(1, y[:, None]).squeeze(1)
    g2 = torch.autograd.grad(((1 - p_y**q) / q).sum(), logits)[0]
    assert torch.allclose(g1, q * g2, atol=1e-6)


def test_loss_ema_and_lff_weights_follow_the_official_updates():
    labels = torch.tensor([0, 0, 1, 1])
    ema = LossEMA(labels, 2, alpha=0.7)
    ema.update(torch.tensor([0, 2]), torch.tensor([1.0, 4.0]))  # first: the value itself
    assert ema.value.tolist() == [1.0, 0.0, 4.0, 0.0]
    ema.update(torch.tensor([0, 1]), torch.tensor([2.0, 3.0]))
    assert torch.allclose(ema.value, torch.tensor([0.7 * 1 + 0.3 * 2, 3.0, 4.0, 0.0]))
    # normalised by the class maximum: class 0 max is 3.0 (sample 1), class 1 max 4.0
    assert torch.allclose(ema.normalized(torch.arange(4)), torch.tensor([1.3 / 3, 1.0, 1.0, 0.0]))
    other = LossEMA(labels, 2, alpha=0.7)
    other.update(torch.arange(4), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    w = lff_weights(ema, other, torch.arange(4))
    assert torch.allclose(w, torch.tensor([(1.3 / 3) / (1.3 / 3 + 1), 0.5, 0.5, 0.0]), atol=1e-6)


def test_group_dro_update_known_answer():
    q = torch.full((4,), 0.25)
    losses = torch.tensor([1.0, 2.0, 0.0, 5.0])
    present = torch.tensor([True, True, False, True])
    new = group_dro_update(q, losses, present, step_size=0.1)
    raw = torch.tensor([np.exp(0.1), np.exp(0.2), 1.0, np.exp(0.5)], dtype=torch.float32) * 0.25
    assert torch.allclose(new, raw / raw.sum())


# -- metrics -----------------------------------------------------------------------------------
def test_group_accuracy_known_answer():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    biases = np.array([0, 0, 1, 1, 1, 0, 0])
    preds = np.array([0, 0, 1, 1, 0, 1, 1])
    ga = GroupAccuracy.of(preds, labels, biases, (2, 2), aligned=np.array([0, 1]))
    assert np.allclose(ga.matrix, [[100.0, 0.0], [100.0, 50.0]])
    s = ga.summary()
    assert s["unbiased"] == pytest.approx(62.5)
    assert s["aligned"] == pytest.approx(75.0)  # (0,0) and (1,1)
    assert s["conflicting"] == pytest.approx(50.0)  # (0,1) and (1,0)
    assert s["worst"] == 0.0
    assert s["accuracy"] == pytest.approx(500 / 7)


def test_aligned_bias_pairs_by_over_representation():
    # CelebA's training counts (not blond / blond x female / male): both classes have more
    # women, but blond pairs with female and not-blond with male, as in LWBC's code
    counts = np.array([[71629, 66874], [22880, 1387]])
    assert aligned_bias(counts).tolist() == [1, 0]
    assert aligned_bias(np.array([[90, 5, 5], [5, 90, 5], [5, 5, 90]])).tolist() == [0, 1, 2]


# -- data --------------------------------------------------------------------------------------
def test_colored_shapes_bias_and_unbiased_splits():
    train = ColoredShapes("train", 400, 16, seed=0, conflict_ratio=0.05)
    assert (train.labels != train.biases).sum() == 20  # exactly 5 %
    assert np.bincount(train.labels).tolist() == [67, 67, 67, 67, 66, 66]
    test = ColoredShapes("test", 72, 16, seed=0)
    assert (test.group_counts() == 2).all()  # every shape x colour twice
    a, b = ColoredShapes("train", 5, 16, 3, 0.2), ColoredShapes("train", 5, 16, 3, 0.2)
    assert np.array_equal(a.image_uint8(4), b.image_uint8(4))
    img = a.image_uint8(0)
    colour = np.array([230, 25, 75]) if a.biases[0] == 0 else None
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    if colour is not None:  # the shape is drawn in its colour
        assert (np.abs(img.reshape(-1, 3).astype(int) - colour).sum(1) < 60).any()


def test_waterbird_shapes_confounder():
    train = WaterbirdShapes("train", 200, 16, seed=0, conflict_ratio=0.05)
    assert train.group_counts().tolist() == [[95, 5], [5, 95]]
    val = WaterbirdShapes("val", 40, 16, seed=0)
    assert (val.group_counts() == 10).all()
    land = train.image_uint8(int(np.flatnonzero(train.biases == 0)[0])).astype(float)
    water = train.image_uint8(int(np.flatnonzero(train.biases == 1)[0])).astype(float)
    assert water[..., 2].mean() > land[..., 2].mean()  # water is blue


def test_empty_group_is_named():
    ds = ColoredShapes("train", 60, 16, seed=0, conflict_ratio=0.0)
    with pytest.raises(DataError, match=r"group \(class 'disk', bias 'green'\) has no sample"):
        check_groups(ds, "val split")


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24, 3), 120, np.uint8)).save(path)


def test_celeba_layout(tmp_path):
    names = ["Blond_Hair", "Male", "Smiling"]
    rows = [
        ("a.jpg", 1, -1, 1, 0),
        ("b.jpg", -1, 1, 1, 0),
        ("c.jpg", 1, 1, -1, 1),
        ("d.jpg", -1, -1, -1, 2),
    ]
    lines = [str(len(rows)), " ".join(names)]
    lines += [f"{f} {a} {b} {c}" for f, a, b, c, _ in rows]
    (tmp_path / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "list_eval_partition.txt").write_text("".join(f"{r[0]} {r[4]}\n" for r in rows))
    for r in rows:
        _image(tmp_path / "img_align_celeba" / r[0])
    train = CelebAGroups(tmp_path, "train", "Blond_Hair", "Male", 16)
    assert train.labels.tolist() == [1, 0] and train.biases.tolist() == [0, 1]
    assert train.class_names == ("not Blond_Hair", "Blond_Hair")
    assert train.image_uint8(0).shape == (16, 16, 3)
    with pytest.raises(DataError, match="'Blond' is not a CelebA attribute; valid: Blond_Hair"):
        CelebAGroups(tmp_path, "train", "Blond", "Male", 16)


def test_waterbirds_layout(tmp_path):
    meta = "img_id,img_filename,y,split,place\n1,x/a.jpg,0,0,0\n2,x/b.jpg,1,0,1\n3,x/c.jpg,1,2,0\n"
    (tmp_path / "metadata.csv").write_text(meta)
    for f in ("a", "b", "c"):
        _image(tmp_path / "x" / f"{f}.jpg")
    train = WaterbirdsGroups(tmp_path, "train", 16)
    assert train.labels.tolist() == [0, 1] and train.biases.tolist() == [0, 1]
    (tmp_path / "metadata.csv").write_text("img_filename,y,split\nx/a.jpg,0,0\n")
    with pytest.raises(DataError, match="no column 'place'; columns: img_filename, y, split"):
        WaterbirdsGroups(tmp_path, "train", 16)


def test_group_folder_layout_and_errors(tmp_path):
    for f in ("cat/1.png", "cat/2.png", "dog/3.png"):
        _image(tmp_path / f)
    (tmp_path / "g.csv").write_text(
        "path,bias,split\ncat/1.png,indoor,train\ncat/2.png,outdoor,val\ndog/3.png,indoor,train\n"
    )
    train = GroupFolder(tmp_path, "g.csv", "train", 16)
    assert train.class_names == ("cat", "dog") and train.bias_names == ("indoor", "outdoor")
    assert train.labels.tolist() == [0, 1] and train.biases.tolist() == [0, 0]
    (tmp_path / "g.csv").write_text("path,bias,split\ncat/1.png,indoor,training\n")
    with pytest.raises(DataError, match="split value 'training' is not one of train, val, test"):
        GroupFolder(tmp_path, "g.csv", "train", 16)
    (tmp_path / "g.csv").write_text("path,group,split\ncat/1.png,indoor,train\n")
    with pytest.raises(DataError, match="no column 'bias'"):
        GroupFolder(tmp_path, "g.csv", "train", 16)


# -- config ------------------------------------------------------------------------------------
def test_debias_config_errors():
    with pytest.raises(ConfigError, match="task=debias cannot run data=synthetic"):
        compose(["task=debias"])
    with pytest.raises(ConfigError, match="task=active cannot run data=colored_shapes"):
        compose(["data=colored_shapes"])
    with pytest.raises(ConfigError, match="debias.method='dro' is not valid; choose one of: erm"):
        compose(["experiment=lwbc_colored_shapes", "debias.method=dro"])
    with pytest.raises(ConfigError, match="data.conflict_ratio=2 must be <= 1"):
        compose(["experiment=lwbc_colored_shapes", "data.conflict_ratio=2"])
    cfg = compose(["experiment=lff_colored_shapes"])
    assert cfg.debias.method == "lff" and cfg.debias.lwbc.members == 30  # BAR's values


# -- end to end --------------------------------------------------------------------------------
def _tiny(tmp: Path, *extra: str) -> list[str]:
    return [
        "data.num_train=120",
        "data.num_val=72",
        "data.num_test=72",
        "data.image_size=16",
        "debias.epochs=3",
        "debias.batch_size=32",
        "debias.lwbc.members=5",
        "debias.lwbc.warmup=1",
        "debias.jtt.upweight=[5,10]",
        "debias.ssl.epochs=1",
        "debias.ssl.batch_size=32",
        f"debias.features.cache_dir={tmp / 'features'}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        *extra,
    ]


@pytest.mark.parametrize("method", ["lwbc", "jtt", "lff", "erm", "groupdro"])
def test_debias_run_end_to_end(tmp_path_factory, capsys, method):
    cache = tmp_path_factory.getbasetemp() / "debias-shared"  # one SimCLR backbone for all
    run_dir = tmp_path_factory.mktemp(method) / "run"
    args = ["run", f"experiment={method}_colored_shapes", f"run_dir={run_dir}", *_tiny(cache)]
    assert main(args) == 0
    res = json.loads((run_dir / "results.json").read_text())
    assert res["method"] == method and res["criterion"] == "worst"
    for split in ("val", "test"):
        assert set(res[split]) == {"accuracy", "unbiased", "aligned", "conflicting", "worst"}
    assert np.array(res["test_matrix"]).shape == (6, 6)
    hist = pd.read_csv(run_dir / "metrics.csv")
    fit = hist[hist.fit == res["selected"]["fit"]]
    # the selected epoch is the best on val (ties: higher unbiased), never chosen on test
    best = fit.sort_values(["val_worst", "val_unbiased", "epoch"], ascending=[False, False, True])
    assert int(best.epoch.iloc[0]) == res["selected"]["epoch"]
    row = fit[fit.epoch == res["selected"]["epoch"]].iloc[0]
    assert row.val_unbiased == pytest.approx(res["val"]["unbiased"], abs=1e-6)
    w = pd.read_parquet(run_dir / "weights.parquet")
    assert list(w.columns) == ["index", "weight", "agreement", "label", "bias"]
    assert len(w) == 120 and (w["index"] == np.arange(120)).all()
    assert (w.weight >= 0).all() if method == "lff" else (w.weight > 0).all()  # LfF: L_B = 0
    ckpt = run_dir / "checkpoints"
    assert (ckpt / "main.pt").is_file()
    assert (ckpt / "committee.pt").is_file() == (method == "lwbc")
    rd = RunDir(run_dir)
    assert rd.read_state().phase == "done"
    rd.verify()  # every file has its recorded checksum
    if method == "lwbc":
        agree = w.agreement.to_numpy()
        assert np.allclose(w.weight, 1 / (agree + 0.02))
        assert set(np.round(agree * 5).astype(int)) <= set(range(6))
        main_state = torch.load(ckpt / "main.pt")
        assert all(not k.startswith("committee") for k in main_state)
    if method == "jtt":
        assert res["selected"]["upweight"] in (5.0, 10.0)
        assert set(w.weight.unique()) <= {1.0, 1.0 + res["selected"]["upweight"]}
    if method == "erm":
        assert (w.weight == 1).all()
    # a finished run resumes to nothing; a second run in the same dir is refused
    assert main(["resume", str(run_dir)]) == 0
    assert main(args) == 2
    capsys.readouterr()
    assert main(["summarize", str(run_dir)]) == 0
    table = capsys.readouterr().out
    assert "| setting | runs | test unbiased | test aligned |" in table
    assert f"| {method} / colored_shapes | 1 | {res['test']['unbiased']:.1f} |" in table
    out = run_dir.parent / "report"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert pd.read_csv(out / "runs.csv").method.tolist() == [method]


# -- the saved weights re-weight another run ---------------------------------------------------
def test_image_weights_sample_labeled_images_by_weight(tmp_path):
    from helpers import tiny_overrides

    from alseg.data.weights import load_image_weights
    from alseg.parts import build_parts

    n = 12
    weights = np.zeros(n)
    weights[[1, 4]] = [1.0, 3.0]
    path = tmp_path / "weights.parquet"
    pd.DataFrame({"index": np.arange(n), "weight": weights}).to_parquet(path)
    cfg = compose(tiny_overrides(tmp_path, f"data.image_weights={path}"))
    parts = build_parts(cfg, progress=False)
    dm = parts.datamodule
    parts.store.add(parts.oracle.annotate(np.arange(parts.store.num_regions)), 0)
    dm.refresh()
    seen = [int(i) for _ in range(10) for b in dm.train_dataloader() for i in b["index"]]
    assert set(seen) == {1, 4}
    assert seen.count(4) > 1.8 * seen.count(1)  # 3 : 1 in expectation (over 120 draws)
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"index": [0, 1], "weight": [1.0, 1.0]}).to_parquet(bad)
    with pytest.raises(ValueError, match="has 2 rows .* the pool has 12 images"):
        load_image_weights(bad, n)
    pd.DataFrame({"index": np.arange(n), "w": weights}).to_parquet(bad)
    with pytest.raises(ValueError, match="no column 'weight'"):
        load_image_weights(bad, n)


def test_lwbc_celeba_protocol_values():
    cfg = compose(["experiment=lwbc_celeba"])
    c = cfg.debias.lwbc
    assert (c.members, c.set_size, c.kd_lambda, c.kd_temperature, c.warmup) == (
        40,
        300,
        0.6,
        2.5,
        5,
    )
    assert (cfg.debias.temperature, cfg.debias.epochs, cfg.debias.lr) == (150.0, 30, 6e-3)
    assert (cfg.debias.batch_size, c.alpha, c.loss_scale) == (256, 0.02, 1.0)
    assert cfg.debias.select == "conflicting" and cfg.data.name == "celeba"
    assert (cfg.data.target_attr, cfg.data.bias_attr) == ("Blond_Hair", "Male")


def test_fingerprint_names_the_group_assignment():
    """The feature cache is keyed by fingerprints: images with other labels or biases
    (another ratio, seed, or generator) never share one."""
    a = ColoredShapes("train", 60, 16, seed=0, conflict_ratio=0.1)
    b = ColoredShapes("train", 60, 16, seed=0, conflict_ratio=0.1)
    assert a.fingerprint == b.fingerprint
    b.biases = b.biases.copy()
    b.biases[0] = (b.biases[0] + 1) % 6
    assert a.fingerprint != b.fingerprint
    assert ColoredShapes("train", 60, 16, seed=1, conflict_ratio=0.1).fingerprint != a.fingerprint


def test_debias_run_logs_to_wandb_offline(tmp_path, monkeypatch):
    """Group accuracies per epoch, the weight histogram and the most up-weighted samples
    as an image table, in one offline W&B run beside the run dir's numbers."""
    pytest.importorskip("wandb")
    from helpers import closed_wandb_logs

    from alseg.wandb_offline import history

    monkeypatch.setenv("WANDB_MODE", "offline")
    run_dir = tmp_path / "run"
    extra = ["logger=wandb", "debias.features.backbone=torchvision", "debias.top_samples=4"]
    args = ["run", "experiment=lwbc_colored_shapes", f"run_dir={run_dir}", *_tiny(tmp_path)]
    assert main(args[:3] + [a for a in args[3:] if a != "logger=none"] + extra) == 0
    (log,) = closed_wandb_logs(run_dir)
    rows = history(log)
    epochs = [r for r in rows if "lwbc/val_worst" in r]
    saved = pd.read_csv(run_dir / "metrics.csv")
    assert [r["lwbc/epoch"] for r in epochs] == saved.epoch.tolist() == [1, 2, 3]
    assert [r["lwbc/val_unbiased"] for r in epochs] == pytest.approx(saved.val_unbiased.tolist())
    assert any("debias/weights/bins" in r or "debias/weights/_type" in r for r in rows)
    tables = [r for r in rows if "debias/most_upweighted/nrows" in r]
    assert [t["debias/most_upweighted/nrows"] for t in tables] == [4]


def test_jtt_upsamples_as_the_official_code():
    """anniesch/jtt (run_expt.py): the error set is appended up_weight times
    (Subset(train, errors * up_weight)), so an error appears 1 + lambda times and an epoch
    runs over the enlarged set, without replacement."""
    import torch

    from alseg.debias.run import FeatureData, jtt_copies

    errors = np.array([False, True, False, True, False])
    copies = jtt_copies(errors, 3)
    assert copies.tolist() == [1, 4, 1, 4, 1]
    feats = torch.arange(5, dtype=torch.float32)[:, None]

    class Split(SimpleNamespace):
        def __len__(self) -> int:
            return 5

    ds = Split(split="train", labels=np.zeros(5, int), biases=np.zeros(5, int))
    data = FeatureData({"train": feats}, (ds,))  # type: ignore[arg-type]
    loader = data.train_loader(batch_size=4, seed=0, copies=torch.from_numpy(copies))
    seen = torch.cat([batch[3] for batch in loader]).tolist()
    assert len(seen) == 5 + 2 * 3  # one epoch: the enlarged set
    assert sorted(seen) == [0, 1, 1, 1, 1, 2, 3, 3, 3, 3, 4]
    with pytest.raises(ValueError, match="debias.jtt.upweight=2.5 must be a whole number"):
        jtt_copies(errors, 2.5)
