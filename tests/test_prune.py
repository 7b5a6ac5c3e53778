"""Data pruning (alseg.prune): each score against a hand-computed case, vmap GraNd against
a per-sample backward loop, forgetting counts on scripted sequences (and the streaming
callback against data_diet's update rule), selection rules on toy scores, and the
score -> retrain protocol end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from alseg.cli import main
from alseg.config import ConfigError, compose
from alseg.prune.callbacks import EpochScores, TrainingDynamics
from alseg.prune.scores import (
    dynamic_uncertainty,
    forgetting,
    grand,
    last_layer,
    per_image_mean,
    pixel_statistics,
)
from alseg.prune.select import bin_allocate, ccs, select


# -- scores ------------------------------------------------------------------------------------
def test_pixel_statistics_known_answer():
    # p = softmax([0, ln 3]) = (0.25, 0.75)
    logits = torch.tensor([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    stats = pixel_statistics(logits, torch.tensor([1, 0]), ignore_index=255)
    assert stats["p_true"].tolist() == pytest.approx([0.75, 0.25])
    assert stats["acc"].tolist() == [1.0, 0.0]
    assert stats["margin"].tolist() == pytest.approx([0.5, -0.5])
    assert stats["el2n"].tolist() == pytest.approx([np.sqrt(0.125), np.sqrt(0.75**2 * 2)])


def test_segmentation_scores_average_over_labeled_pixels():
    logits = torch.zeros(1, 2, 1, 3)
    logits[0, 1, 0, 0] = 10.0  # pixel 0 predicts class 1, pixels 1, 2 are 50/50 (argmax 0)
    target = torch.tensor([[[1, 0, 255]]])  # pixel 2 unlabeled
    stats = pixel_statistics(logits, target, 255)
    p0 = torch.softmax(torch.tensor([0.0, 10.0]), 0)[1].item()
    assert stats["p_true"].item() == pytest.approx((p0 + 0.5) / 2)
    assert stats["acc"].item() == pytest.approx(1.0)
    none = per_image_mean(torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.bool))
    assert torch.isnan(none).all()


def test_forgetting_scripted_sequences():
    acc = np.array(
        [
            [1, 0, 0, 1, 1.0],
            [0, 0, 1, np.nan, 0.6],
            [1, 0, 1, 0, 0.9],
            [0, 0, 0, 0, 0.2],
        ]
    )
    # sample 0: 1 0 1 0 -> 2; sample 1: never correct -> inf; sample 2: 0 1 1 0 -> 1;
    # sample 3: 1 (absent) 0 0 -> 1; sample 4 (pixel accuracies): drops 0.4 + 0.7
    assert forgetting(acc).tolist() == pytest.approx([2.0, np.inf, 1.0, 1.0, 1.1])


def test_dynamic_uncertainty_known_answer():
    """The official get_coreset.py: windows ending at epochs J-1 .. E-2 (the last epoch's
    window left out), torch.std (unbiased) of each, averaged (its x10 does not rank)."""
    p = np.array([[0.2, 0.5], [0.4, 0.5], [0.6, 0.9], [0.8, 0.1]])
    # windows of 2 over epochs (0,1), (1,2): unbiased std of 2 values = |diff| / sqrt 2
    # -> sample 0: 0.2 / 1.414 twice; sample 1: 0 and 0.4 / 1.414
    r2 = np.sqrt(2)
    assert dynamic_uncertainty(p, 2).tolist() == pytest.approx([0.2 / r2, 0.2 / r2])
    official = [np.std(p[k : k + 3], axis=0, ddof=1) for k in range(4 - 3)]
    assert dynamic_uncertainty(p, 3) == pytest.approx(np.mean(official, axis=0))
    with pytest.raises(ValueError, match=r"at least prune.window \+ 1 = 5 epochs"):
        dynamic_uncertainty(p, 4)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))))


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(out, y, ignore_index=255)


def test_grand_vmap_equals_a_per_sample_backward_loop():
    torch.manual_seed(0)
    net = _Net()
    net.bn.running_mean.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.randn(5, 3, 6, 6)
    y = torch.randint(3, (5, 6, 6))
    y[0, :2] = 255
    assert last_layer(net) == ["head.weight", "head.bias"]
    for names in (None, ["head.weight", "head.bias"]):
        fast = grand(net, x, y, _loss, names, chunk_size=2)
        loop = []
        for i in range(5):
            net.zero_grad()
            _loss(net(x[i : i + 1]), y[i : i + 1]).backward()
            grads = [
                p.grad.flatten() for n, p in net.named_parameters() if names is None or n in names
            ]
            loop.append(torch.cat(grads).norm())
        assert torch.allclose(fast, torch.stack(loop), atol=1e-5)


def test_grand_at_initialization_scores_the_untrained_model():
    """grand_epochs=[0] scores before the first step (GraNd's paper), with BN in eval mode,
    and leaves the module in training mode."""
    torch.manual_seed(0)
    net = _Net()
    net.device, net.num_classes, net.ignore_index = torch.device("cpu"), 3, 255
    x = torch.randn(6, 3, 6, 6)
    y = torch.randint(3, (6, 6, 6))
    data = [{"image": x[i], "mask": y[i], "index": i} for i in range(6)]
    cb = EpochScores(data, 6, el2n_epochs=[], grand_epochs=[0], batch_size=4, grand_chunk=2)
    trainer = SimpleNamespace(world_size=1, current_epoch=0)
    net.train()
    cb.on_train_start(trainer, net)  # type: ignore[arg-type]
    assert net.training
    cb.on_train_epoch_end(trainer, net)  # type: ignore[arg-type]  # epoch 1: not asked for
    net.eval()
    expected = grand(net, x, y, _loss, None, chunk_size=6)
    out = cb.scores()
    assert set(out) == {"grand", "grand_last"}
    assert np.allclose(out["grand"], expected.numpy(), atol=1e-5)


def test_training_dynamics_stream_equals_data_diet_updates():
    """Classification batches through the callback give data_diet's forgetting counts
    (update_forget_stats, never-correct -> inf), Pleiss et al.'s AUM (the mean logit margin,
    the ``aum`` package's AUMCalculator) and CCS's probability margin (its accumulated
    margin / E)."""
    rng = np.random.default_rng(0)
    N, C, E = 10, 3, 4
    cb = TrainingDynamics(N)
    module = SimpleNamespace(device=torch.device("cpu"), num_classes=C, ignore_index=255)
    trainer = SimpleNamespace(world_size=1)
    labels = torch.from_numpy(rng.integers(C, size=N))
    prev, forgets = np.zeros(N, int), np.zeros(N)
    never = set(range(N))
    margins, logit_margins = np.zeros(N), np.zeros(N)
    for _ in range(E):
        cb.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
        for batch in np.array_split(rng.permutation(N), 3):
            idx = torch.from_numpy(batch)
            logits = torch.from_numpy(rng.normal(size=(len(batch), C))).float()
            cb.on_train_batch_end(
                trainer,  # type: ignore[arg-type]
                module,  # type: ignore[arg-type]
                {"logits": logits},
                {"target": labels[idx], "index": idx},
                0,
            )
            accs = (logits.argmax(1) == labels[idx]).numpy().astype(int)
            forgets[batch[prev[batch] > accs]] += 1  # data_diet's update
            prev[batch] = accs
            never -= set(batch[accs.astype(bool)].tolist())
            p = torch.softmax(logits, 1)
            true = p[torch.arange(len(batch)), labels[idx]]
            other = p.scatter(1, labels[idx][:, None], 0.0).amax(1)
            margins[batch] += (true - other).numpy()
            z_true = logits[torch.arange(len(batch)), labels[idx]]
            z_other = logits.scatter(1, labels[idx][:, None], -torch.inf).amax(1)
            logit_margins[batch] += (z_true - z_other).numpy()
        cb.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]
    forgets[list(never)] = np.inf
    scores = cb.scores(window=2)
    assert scores["forgetting"].tolist() == pytest.approx(forgets.tolist())
    assert scores["aum"] == pytest.approx(logit_margins / E, abs=1e-6)
    assert scores["aum_prob"] == pytest.approx(margins / E)


# -- selection ---------------------------------------------------------------------------------
def test_selection_rules_on_toy_scores():
    score = np.array([0.1, 0.9, 0.5, 0.3, 0.7, np.inf, 0.2, 0.8, 0.4, 0.6])
    assert select("hardest", 0.3, score, "el2n").tolist() == [1, 5, 7]  # inf is hardest
    assert select("easiest", 0.3, score, "el2n").tolist() == [0, 3, 6]
    assert select("offset", 0.3, score, "el2n", offset=0.2).tolist() == [4, 7, 9]
    # AUM: low is hard
    assert select("hardest", 0.4, -score[[0, 1, 2, 3, 4]], "aum").tolist() == [1, 4]
    r = select("random", 0.5, score, "el2n", seed=3)
    assert len(r) == 5 and len(set(r)) == 5 and (np.diff(r) > 0).all()
    classes = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    rb = select("random_balanced", 0.5, None, classes=classes, seed=1)
    assert (classes[rb] == 0).sum() == 2 and (classes[rb] == 1).sum() == 3
    # per class the hardest half: class 0 (0.1, 0.9, 0.5, 0.3) -> 1, 2; class 1 (0.7, inf,
    # 0.2, 0.8, 0.4, 0.6) -> 5, 7, 4 (plain hardest-first would take 1, 5, 7, 4, 9)
    assert select("hardest_balanced", 0.5, score, "el2n", classes).tolist() == [1, 2, 4, 5, 7]
    with pytest.raises(ValueError, match="hardest_balanced needs a class per sample"):
        select("hardest_balanced", 0.5, score, "el2n")
    with pytest.raises(ValueError, match="prune.rule='best' is not valid"):
        select("best", 0.5, score, "el2n")
    with pytest.raises(ValueError, match="prune.keep=0 must be in"):
        select("hardest", 0.0, score, "el2n")


def test_ccs_allocation_and_hard_cutoff():
    # smallest bin first, each at most an equal share of what is left
    assert bin_allocate(9, np.array([10, 1, 5])).tolist() == [4, 1, 4]
    assert bin_allocate(3, np.array([0, 0, 7])).tolist() == [0, 0, 3]
    rng = np.random.default_rng(0)
    aum = np.linspace(-1, 1, 100)  # low AUM = hard
    kept = ccs(aum, "aum", keep=0.2, beta=0.1, strata=4, rng=rng)
    assert len(kept) == 20 and kept.min() >= 10  # the 10 hardest (lowest AUM) dropped
    per_bin = np.bincount(
        np.minimum(((aum[kept] - aum[10]) / (1.0001 - aum[10]) * 4).astype(int), 3)
    )
    assert per_bin.tolist() == [5, 5, 5, 5]  # equal bins, equal shares


# -- protocol ----------------------------------------------------------------------------------
def _tiny(tmp, *extra):
    return [
        "experiment=prune_shapes",
        "data.num_train=32",
        "data.num_val=12",
        "data.num_test=18",
        "data.image_size=16",
        "regions.cell=16",
        "data.batch_size=8",
        "trainer.max_epochs=3",
        "window=2",
        "prune.el2n_epochs=[1]",
        "prune.grand_epochs=[]",
        "prune.score_seeds=[0,1]",
        f"regions.cache_dir={tmp / 'cache'}",
        "trainer.enable_progress_bar=false",
        "logger=none",
        *extra,
    ]


def test_prune_score_then_retrain(tmp_path):
    """Two scoring seeds averaged; hardest and random subsets retrained with the full run's
    iterations; the report's table and plot over them."""
    score_dir = tmp_path / "score"
    assert main(["prune", "score", *_tiny(tmp_path), f"run_dir={score_dir}"]) == 0
    scores = pd.read_parquet(score_dir / "scores.parquet")
    for name in ("el2n", "forgetting", "dyn_unc", "aum"):
        assert {f"{name}_seed0", f"{name}_seed1", name} <= set(scores.columns)
        both = scores[[f"{name}_seed0", f"{name}_seed1"]].to_numpy()
        assert np.allclose(scores[name], both.mean(1), equal_nan=True)
    assert scores["index"].tolist() == list(range(32))
    res = json.loads((score_dir / "results.json").read_text())
    assert res["stage"] == "score" and res["images"] == 32

    for rule, keep in (("hardest", 0.5), ("random", 0.25)):
        out = tmp_path / f"{rule}"
        args = ["prune", "retrain", *_tiny(tmp_path), f"scores={score_dir}", f"keep={keep}"]
        assert main([*args, f"rule={rule}", f"run_dir={out}"]) == 0
        kept = json.loads((out / "kept.json").read_text())["kept"]
        assert len(kept) == round(32 * keep)
        if rule == "hardest":
            el2n = scores.set_index("index")["el2n"]
            assert el2n[kept].min() >= el2n.drop(kept).max()
        row = pd.read_csv(out / "metrics.csv").iloc[0]
        assert row.steps == 3 * (32 // 8)  # the full run's iterations
        assert row.kept == len(kept)
    dirs = [str(score_dir), str(tmp_path / "hardest"), str(tmp_path / "random")]
    assert main(["report", *dirs, "--out", str(tmp_path / "report")]) == 0
    # again, with the report folder inside the glob (as a rerun of scripts/prune.sh): named
    assert main(["report", *dirs, str(tmp_path / "report"), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "table.md").read_text()
    assert "| setting | keep 50 % | keep 25 % |" in table
    assert "| hardest el2n |" in table and "| random |" in table
    assert (tmp_path / "report" / "pruning.png").stat().st_size > 1000


def test_prune_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="task=prune trains on fully labeled images"):
        compose(["experiment=prune_shapes", "labeling=dominant"])
    args = ["prune", "retrain", *_tiny(tmp_path), f"run_dir={tmp_path / 'r'}"]
    assert main(args) == 2  # no scores file for rule=hardest
    pd.DataFrame({"index": np.arange(32), "class": 0, "el2n": 0.0}).to_parquet(
        tmp_path / "s.parquet"
    )
    assert (
        main(
            [*args[:-1], f"scores={tmp_path / 's.parquet'}", "by=aum", f"run_dir={tmp_path / 'q'}"]
        )
        == 2
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (["trainer.max_epochs=1", "window=2"], "prune.el2n_epochs=[2] asks for scores after"),
        (["prune.score_seeds=[]"], "prune.score_seeds=[] scores with no model"),
        (["trainer.max_epochs=3"], "prune.window=5 (dynamic uncertainty over windows"),
    ],
)
def test_scores_that_cannot_be_computed_are_refused_before_a_run_dir(
    tmp_path, extra, message, capsys
):
    """EL2N / GraNd epochs beyond the run, no scoring seed, a window longer than the run:
    refused by name before anything trains or is written (they went missing silently from
    scores.parquet, or failed after it was written)."""
    out = tmp_path / "score"
    args = ["prune", "score", "experiment=prune_shapes", "logger=none", f"run_dir={out}"]
    assert main([*args, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_retrain_with_missing_scores_writes_nothing(tmp_path, capsys):
    out = tmp_path / "retrain"
    args = ["prune", "retrain", "experiment=prune_shapes", "logger=none", f"run_dir={out}"]
    assert main([*args, "keep=0.5", f"scores={tmp_path / 'nothing'}"]) == 2
    assert "no scores.parquet there" in capsys.readouterr().err
    assert not out.exists()


class _TinySeg(nn.Module):
    """A 1x1-conv segmentation net with batch norm: train and eval passes differ."""

    num_classes, ignore_index = 3, 255

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.conv = nn.Conv2d(3, 3, 1)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.bn(x))


def test_dynamic_uncertainty_reads_an_eval_pass_on_the_unaugmented_view():
    """As the official main_and_produce.py: after the training forward (its batch-norm
    statistics updated) and before the update, the model in eval mode scores the batch's
    un-augmented images; their p_y, not the augmented training pass's, enter the window."""
    torch.manual_seed(0)
    net = _TinySeg()
    images = torch.rand(4, 3, 6, 6)
    masks = torch.randint(0, 3, (4, 6, 6))
    data = [{"image": images[i], "mask": masks[i], "index": i} for i in range(4)]
    cb = TrainingDynamics(4, data)
    trainer = SimpleNamespace(world_size=1)
    cb.on_train_epoch_start(trainer, net)  # type: ignore[arg-type]
    idx = torch.tensor([2, 0])
    augmented = images[idx].flip(-1) + 0.3
    batch = {"image": augmented, "target": masks[idx].flip(-1), "index": idx}
    cb.on_train_batch_start(trainer, net, batch, 0)  # type: ignore[arg-type]
    net.train()
    logits = net(augmented)  # the training forward (updates the BN statistics)
    cb.on_before_backward(trainer, net, logits.sum())  # type: ignore[arg-type]
    assert net.training  # left as it was
    cb.on_train_batch_end(trainer, net, {"logits": logits.detach()}, batch, 0)  # type: ignore[arg-type]
    cb.on_train_epoch_end(trainer, net)  # type: ignore[arg-type]
    net.eval()
    with torch.no_grad():
        p = torch.softmax(net(images[idx]), 1).gather(1, masks[idx][:, None]).mean((1, 2, 3))
    got = cb.epochs["p_true"][0]
    assert got[[2, 0]] == pytest.approx(p.numpy(), abs=1e-6) and np.isnan(got[[1, 3]]).all()
    trained = torch.softmax(logits.detach(), 1).gather(1, masks[idx].flip(-1)[:, None])
    assert got[2] != pytest.approx(float(trained[0].mean()), abs=1e-3)  # not the training pass
