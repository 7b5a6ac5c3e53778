"""The published-protocol experiment configs compose with the published values and run
end to end on fixture trees of their data sets (CPU, tiny overrides)."""

from __future__ import annotations

import csv

import pytest
from layout_fixtures import cityscapes_tree, sbd_tree, voc_tree

from alseg.cli import main
from alseg.config import compose

CPU = [
    "model.encoder=resnet18",
    "model.encoder_weights=null",
    "trainer.accelerator=cpu",
    "trainer.max_steps=2",
    "trainer.enable_progress_bar=false",
    "regions.n_segments=16",
    "regions.num_workers=1",
    "data.num_workers=0",
    "data.val_holdout=1",
    "data.crop_size=[32,32]",
    "active.rounds=2",
    "logger=none",
]


def test_mulactseg_protocol_values():
    cs = compose(["experiment=mulactseg_cityscapes"])
    assert cs.data.name == "cityscapes" and cs.labeling.type == "multiclass"
    assert cs.labeling.void_bit and cs.regions.method == "seeds" and cs.regions.n_segments == 2048
    assert cs.active.budget == 100000 and cs.active.strategy_params.delta == 6.0
    assert (cs.model.lr, cs.stage2.lr, cs.model.head_lr_mult) == (2e-5, 4e-5, 10.0)
    assert cs.trainer.max_steps == 80000 and list(cs.data.crop_size) == [768, 768]
    voc = compose(["experiment=mulactseg_voc"])
    assert voc.data.name == "voc" and not voc.labeling.void_bit
    assert voc.regions.n_segments == 150 and voc.active.strategy_params.delta == 12.0
    assert voc.active.budget == 10000 and voc.trainer.max_steps == 30000
    assert list(voc.data.crop_size) == [513, 513] and voc.data.pool_batch_size == 1


@pytest.mark.parametrize(
    "tree,extra,budget",
    [(voc_tree, [], 3), (sbd_tree, ["data=sbd", "data.train_split=train"], 4)],
)
def test_image_labels_voc_runs_on_fixture_trees(tmp_path, tree, extra, budget):
    """IRN's VOC setting (background class, train_aug tags) end to end; on SBD the
    semantic-boundary F-measure reads its own boundaries (person: a block outline)."""
    cfg = compose(["experiment=image_labels_voc"])
    assert cfg.weak.background and cfg.data.train_split == "train_aug"
    run_dir = tmp_path / "run"
    args = ["run", "experiment=image_labels_voc", f"data.root={tree(tmp_path / 'data')}", *extra]
    args += [f"run_dir={run_dir}", "weak.walk_steps=4", "weak.cam_scales=[1.0]", *CPU]
    args += [f"active.init_budget={budget}"]  # voc: 1 object class per image, sbd: 2
    assert main([a for a in args if a != "active.rounds=2"]) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["clicks"]) == budget  # background: free
    assert "bF_background" not in rows[0] and 0 <= float(rows[0]["boundary_mf_ods"]) <= 100
    assert "bF_person" in rows[0]  # class 15 has ground-truth boundaries in both trees


@pytest.mark.parametrize(
    "name,tree,budget",
    [("mulactseg_voc", voc_tree, 6), ("mulactseg_cityscapes", cityscapes_tree, 12)],
)
def test_mulactseg_configs_run_on_fixture_trees(tmp_path, name, tree, budget):
    pytest.importorskip("cv2")  # SEEDS
    root = tree(tmp_path / "data")
    run_dir = tmp_path / "run"
    args = [
        "run",
        f"experiment={name}",
        f"data.root={root}",
        f"active.budget={budget}",
        f"regions.cache_dir={tmp_path / 'cache'}",
        f"run_dir={run_dir}",
        *CPU,
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 2 and "pseudo_acc" in rows[1]
    sel = list(csv.DictReader((run_dir / "selections" / "round_01.csv").open()))
    assert sum(float(r["cost"]) for r in sel) <= budget


def test_adaptive_superpixel_protocol_values():
    cs = compose(["experiment=adaptive_superpixel_cityscapes"])
    assert cs.active.strategy == "adaptive_sizebal" and cs.active.strategy_params.eps == 0.1
    assert cs.regions.method == "seeds" and cs.regions.n_segments == 8192
    assert cs.labeling.type == "dominant" and cs.sieve.enabled and cs.sieve.min_size == 512
    assert (cs.model.optimizer, cs.model.lr, cs.model.weight_decay) == ("sgd", 0.007, 4e-5)
    assert cs.active.budget == 50000 and cs.trainer.max_steps == 60000
    assert list(cs.data.crop_size) == [769, 769]
    syn = compose(["experiment=adaptive_superpixel_synthetic"])
    assert syn.data.name == "synthetic" and syn.active.strategy == "adaptive_sizebal"
    with pytest.raises(ValueError, match="need dominant labels"):
        compose(["experiment=adaptive_superpixel_synthetic", "labeling=multiclass"])


def test_adaptive_cityscapes_config_runs_on_a_fixture_tree(tmp_path):
    pytest.importorskip("cv2")
    root = cityscapes_tree(tmp_path / "data")
    run_dir = tmp_path / "run"
    args = [
        "run",
        "experiment=adaptive_superpixel_cityscapes",
        f"data.root={root}",
        "active.budget=6",
        f"regions.cache_dir={tmp_path / 'cache'}",
        f"run_dir={run_dir}",
        *CPU,
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 2 and "sieve_kept_acc" in rows[1]
    assert (run_dir / "sieve" / "round_01" / "manifest.json").is_file()


def test_domain_adaptation_protocol_values():
    lam = compose(["experiment=lamda_officehome"])
    assert lam.data.name == "imagefolder_da" and lam.active.strategy == "lamda"
    assert (lam.model.arch, lam.model.encoder, lam.model.head) == (
        "Classifier",
        "resnet50",
        "cosine",
    )
    assert (lam.model.optimizer, lam.model.nesterov, lam.model.lr_schedule) == ("sgd", True, "inv")
    assert (
        lam.model.lr == 0.001 and lam.model.head_lr_mult == 10.0 and lam.model.weight_decay == 5e-4
    )
    assert lam.adaptation.alignment == "dann" and list(lam.adaptation.disc_hidden) == [1024, 1024]
    assert lam.active.schedule == "continuous" and lam.active.init_budget == 0
    syn = compose(["experiment=lamda_synthetic"])
    assert syn.data.name == "shapes" and syn.regions.cell == syn.data.image_size
    ripu = compose(["experiment=ripu_gta5_cityscapes"])
    assert ripu.data.name == "gta5_cityscapes" and ripu.labeling.type == "pixel"
    assert ripu.active.strategy == "ripu" and ripu.active.schedule == "continuous"
    # RIPU's DeepLabV3+ protocol: 5% of 2,975 x 640 x 1280 pixels in 4x4 windows over 5
    # selections at 10K..18K iterations, training stopped at 40K, poly lr over 62.5K
    assert ripu.active.budget * 5 * 16 == pytest.approx(0.05 * 2975 * 640 * 1280)
    assert (ripu.active.init_steps, ripu.trainer.max_steps) == (10000, 2000)
    assert ripu.active.init_steps + 4 * 2000 + ripu.active.final_steps == 40000
    assert ripu.active.lr_total_steps == 62500 and ripu.data.batch_size == 2
    rs = compose(["experiment=ripu_synthetic"])
    assert rs.regions.cell == 3 and rs.data.domain == "target" and rs.data.label_shift == 0.5


def test_ripu_gta5_cityscapes_config_runs_on_fixture_trees(tmp_path):
    from layout_fixtures import gta5_tree

    cs, gta = cityscapes_tree(tmp_path / "cs"), gta5_tree(tmp_path / "gta")
    run_dir = tmp_path / "run"
    args = [
        "run",
        "experiment=ripu_gta5_cityscapes",
        f"data.root={cs}",
        f"data.source_root={gta}",
        "data.image_size=[32,64]",
        "active.budget=20",
        "active.init_steps=2",  # the protocol's 10K / 22K / 62.5K iterations, at CPU scale
        "active.final_steps=2",
        "active.lr_total_steps=8",
        f"regions.cache_dir={tmp_path / 'cache'}",
        f"run_dir={run_dir}",
        *[o for o in CPU if not o.startswith("regions.n_segments")],
    ]
    assert main(args) == 0
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [float(r["clicks"]) for r in rows] == [0.0, 20.0]
