"""Image-level labels (alseg.weak): pooling and the tag loss against hand values, CAM
normalisation, path indexing against a per-pair loop, the boundary MIL loss on a
two-region image, and the sparse random walk against IRN's dense matrix power."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from alseg.weak.cam import (
    cam_labels,
    confident_labels,
    normalized_cams,
    pool_class_maps,
    tag_loss,
)
from alseg.weak.paths import PathIndex, boundary_mil_loss, random_walk


def test_pooling_hand_values():
    maps = torch.tensor([[[[0.0, 1.0], [2.0, 5.0]]]])  # (1, 1, 2, 2)
    assert pool_class_maps(maps, "gap").item() == pytest.approx(2.0)
    assert pool_class_maps(maps, "gmp").item() == pytest.approx(5.0)
    r = 2.0
    lse = math.log((math.exp(0) + math.exp(2) + math.exp(4) + math.exp(10)) / 4) / r
    assert pool_class_maps(maps, "lse", r).item() == pytest.approx(lse)
    # lse lies between the mean and the max, and tends to them
    assert pool_class_maps(maps, "lse", 1e-4).item() == pytest.approx(2.0, abs=1e-3)
    assert pool_class_maps(maps, "lse", 1e3).item() == pytest.approx(5.0, abs=1e-2)
    with pytest.raises(ValueError, match="unknown pooling 'avg'; valid: gap, gmp, lse"):
        pool_class_maps(maps, "avg")


def test_tag_loss_hand_value():
    s = torch.tensor([[2.0, -1.0, 0.0]])
    t = torch.tensor([[1, 0, 1]])

    def logsig(v: float) -> float:
        return -math.log(1 + math.exp(-v))

    expected = -(logsig(2.0) + logsig(1.0) + logsig(0.0)) / 3
    assert tag_loss(s, t).item() == pytest.approx(expected)


def test_cams_normalised_and_restricted_to_tags():
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 4, 4)
    tags = torch.tensor([[1, 0, 1], [0, 1, 0]])
    cam = normalized_cams(maps, tags, (8, 8))
    assert cam.shape == (2, 3, 8, 8)
    assert (cam[0, 1] == 0).all() and (cam[1, 0] == 0).all() and (cam[1, 2] == 0).all()
    peaks = cam.flatten(2).amax(2)
    assert peaks[0, 0] == pytest.approx(1.0, abs=1e-4) and peaks[1, 1] == pytest.approx(
        1.0, abs=1e-4
    )
    assert (cam >= 0).all()


def test_cam_labels_and_confident_areas():
    # one image, 3 classes, 1 x 4 pixels; classes 0 and 2 tagged
    cam = torch.tensor(
        [[[[0.9, 0.2, 0.04, 0.31]], [[1.0, 1.0, 1.0, 1.0]], [[0.1, 0.25, 0.03, 0.3]]]]
    )
    tags = torch.tensor([[1, 0, 1]])
    assert cam_labels(cam, tags).tolist() == [[[0, 2, 0, 0]]]  # class 1 untagged
    # street scenes: top > 0.3 and the other <= 0.05
    assert confident_labels(cam, tags).tolist() == [[[255, 255, 255, 255]]]
    cam2 = cam.clone()
    cam2[0, 2, 0, 0] = 0.05
    assert confident_labels(cam2, tags).tolist() == [[[0, 255, 255, 255]]]
    # with a background class 0 (IRN): channels 1.. are the classes
    bg = torch.tensor([[[[0.0, 0.0, 0.0]], [[0.5, 0.2, 0.05]], [[0.1, 0.1, 0.01]]]])
    tags_bg = torch.tensor([[0, 1, 1]])
    assert confident_labels(bg, tags_bg, background=True).tolist() == [[[1, 255, 0]]]
    assert cam_labels(bg, tags_bg, background=0.15).tolist() == [[[1, 1, 0]]]


def _segment_pixels(p: tuple[int, int], q: tuple[int, int]) -> set[tuple[int, int]]:
    """Pixels of the box between p and q within distance 1 of the line through them."""
    (y0, x0), (y1, x1) = p, q
    dy, dx = y1 - y0, x1 - x0
    out = set()
    for y in range(min(y0, y1), max(y0, y1) + 1):
        for x in range(min(x0, x1), max(x0, x1) + 1):
            if (dy * (x - x0) - dx * (y - y0)) ** 2 < dy * dy + dx * dx:
                out.add((y, x))
    return out


def test_path_index_directions():
    idx = PathIndex(5)
    assert len(idx.directions) == 34  # 4 + 9 + 9 + 7 + 5
    dirs = {tuple(d) for d in idx.directions.tolist()}
    assert (0, 4) in dirs and (4, 2) in dirs and (1, -4) in dirs
    assert (0, -1) not in dirs and (4, 3) not in dirs  # the other half-plane; outside r
    k = idx.directions.tolist().index([0, 3])
    assert {tuple(o) for o in idx.offsets[k].tolist()} == {(0, 0), (0, 1), (0, 2), (0, 3)}


def test_path_max_equals_a_per_pair_loop():
    torch.manual_seed(0)
    H, W = 7, 9
    idx = PathIndex(4)
    B = torch.rand(2, H, W)
    peak, valid = idx.path_max(B)
    checked = 0
    for k, (dy, dx) in enumerate(idx.directions.tolist()):
        for y in range(H):
            for x in range(W):
                inside = 0 <= y + dy < H and 0 <= x + dx < W
                assert bool(valid[k, y, x]) == inside
                if not inside:
                    continue
                pix = _segment_pixels((y, x), (y + dy, x + dx))
                for n in range(2):
                    ref = max(B[n, a, b].item() for a, b in pix)
                    assert peak[n, k, y, x].item() == pytest.approx(ref)
                checked += 1
    assert checked > 500


def test_pair_labels_same_and_different():
    labels = torch.tensor([[[0, 0, 1], [255, 0, 1]]])
    idx = PathIndex(2)  # (0, 1), (1, -1), (1, 0), (1, 1)
    same, diff = idx.pair_labels(labels)
    k = {tuple(d): i for i, d in enumerate(idx.directions.tolist())}
    # IRN's training sources at radius 2: rows < H - 1, columns 1 .. W - 2: only (0, 1)
    assert diff[0, k[(0, 1)], 0, 1] and same[0, k[(1, 0)], 0, 1] and diff[0, k[(1, 1)], 0, 1]
    assert not (same | diff)[0, k[(1, -1)], 0, 1]  # to an ignored pixel
    others = torch.ones(2, 3, dtype=torch.bool)
    others[0, 1] = False
    assert not (same | diff)[0][:, others].any()
    assert idx.training_sources(2, 3).tolist() == [[False, True, False], [False, False, False]]


def test_mil_loss_known_value_and_learns_the_boundary():
    """Two regions (left class 0, right class 1). With B constant b the loss is
    (-log(1 - b) - log(b)) / 2; gradient descent on B from a constant start learns a
    boundary: in every row one of the two columns at the region border rises (one
    boundary pixel per crossing path is enough: multiple instances), the interior falls."""
    H, W = 6, 10
    labels = torch.zeros(1, H, W, dtype=torch.long)
    labels[:, :, W // 2 :] = 1
    idx = PathIndex(3)
    b = 0.3
    loss = boundary_mil_loss(torch.full((1, H, W), b), labels, idx, eps=0.0)
    assert loss.item() == pytest.approx((-math.log(1 - b) - math.log(b)) / 2, rel=1e-5)

    logits = torch.zeros(1, H, W, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=20.0)
    for _ in range(200):
        opt.zero_grad()
        boundary_mil_loss(torch.sigmoid(logits), labels, idx).backward()
        opt.step()
    B = torch.sigmoid(logits)[0]
    edge = B[:, W // 2 - 1 : W // 2 + 1]
    # the interior away from the image's frame: with IRN's sources the bottom row and the
    # side columns are only path ends, and fall slower
    inner = torch.cat([B[:-1, 1 : W // 2 - 2], B[:-1, W // 2 + 2 : -1]], dim=1)
    assert edge.amax(1).min() > 0.5 and inner.max() < 0.1


def test_mil_loss_background_split_is_irns_mean_of_halves():
    """With a background class the same-label term is (mean over background pairs + mean
    over object pairs) / 2 (IRN's train_irn.py): background in 3 of 10 columns with
    B = 0.1, an object in 7 with B = 0.4; pairs that cross the border are positive bags.
    Without the split the more numerous object pairs weigh more."""
    H, W = 6, 10
    labels = torch.zeros(1, H, W, dtype=torch.long)
    labels[:, :, 3:] = 3
    B = torch.full((1, H, W), 0.1)
    B[:, :, 3:] = 0.4
    idx = PathIndex(3)
    peak, _ = idx.path_max(B)
    same, diff = idx.pair_labels(labels)
    bg = same & (labels == 0)[:, None]
    obj = same & ~bg
    assert obj.sum() > 2 * bg.sum() > 0
    neg = -torch.log(1 - peak)
    want_neg = ((neg * bg).sum() / bg.sum() + (neg * obj).sum() / obj.sum()) / 2
    want = (want_neg + (-torch.log(peak) * diff).sum() / diff.sum()) / 2
    got = boundary_mil_loss(B, labels, idx, eps=0.0, background=True)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    plain = boundary_mil_loss(B, labels, idx, eps=0.0)
    assert plain.item() > got.item() + 0.01


def test_random_walk_equals_irn_dense_matrix_power():
    torch.manual_seed(0)
    H, W, C = 5, 6, 2
    idx = PathIndex(3)
    B = torch.rand(H, W).double() * 0.5
    scores = torch.rand(C, H, W).double()
    beta, steps = 2.0, 4
    out = random_walk(scores, B, idx, beta=beta, steps=steps)
    # IRN: dense affinities over pairs within the radius, columns normalised, T^steps
    n = H * W
    A = torch.eye(n, dtype=torch.double)
    for y0 in range(H):
        for x0 in range(W):
            for y1 in range(H):
                for x1 in range(W):
                    d2 = (y1 - y0) ** 2 + (x1 - x0) ** 2
                    if 0 < d2 < 9:
                        pix = _segment_pixels((y0, x0), (y1, x1))
                        a = (1 - max(B[a_, b_].item() for a_, b_ in pix)) ** beta
                        A[y0 * W + x0, y1 * W + x1] = a
    T = A / A.sum(0, keepdim=True)
    x = (scores * (1 - B)).reshape(C, n)
    ref = (x @ torch.linalg.matrix_power(T, steps)).reshape(C, H, W)
    assert torch.allclose(out, ref, atol=1e-10)


# -- labeling=image, end to end ------------------------------------------------------------------
def test_image_answers_are_the_classes_of_the_whole_image():
    """One region per image; the answer names every class present (void is not a class),
    one click per class; stored as a multi-class answer."""
    import numpy as np

    from alseg.data.oracle import SimulatedOracle
    from alseg.data.regions import RegionSet, compute_region_map

    masks = [
        torch.tensor([[0, 0, 3], [255, 3, 3]]),
        torch.tensor([[2, 2, 2], [2, 2, 255]]),
    ]
    maps = [compute_region_map(np.zeros((2, 3, 3), np.uint8), "image", {}) for _ in masks]
    assert (maps[0] == 0).all()
    oracle = SimulatedOracle(masks.__getitem__, RegionSet(maps), 4, "image")
    assert oracle.query_costs(np.array([0, 1])).tolist() == [2.0, 1.0]
    ann = oracle.annotate(np.array([0, 1]))
    assert ann.label_type == "multiclass"
    assert ann.bits.tolist() == [[True, False, False, True], [False, False, True, False]]
    assert ann.costs.tolist() == [2.0, 1.0] and ann.classes[1] == 2


def test_tag_mode_trains_on_pooled_class_maps():
    from alseg.models.segmentation import SegmentationModule
    from alseg.models.specs import TagSpec
    from alseg.weak.cam import ImageTagLoss

    net = torch.nn.Conv2d(3, 3, 1)
    m = SegmentationModule(net, 3, loss=ImageTagLoss(TagSpec("gmp"), 3))
    m.log = lambda *a, **k: None  # type: ignore[method-assign]
    logits = torch.randn(2, 3, 4, 4)
    tags = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.bool)
    batch = {"target": torch.zeros(2, 4, 4, dtype=torch.long), "region_classes": tags[:, None]}
    expected = tag_loss(logits.amax((2, 3)), tags)
    assert m._training_loss(logits, batch).item() == pytest.approx(expected.item())


def test_image_labels_need_image_regions():
    from alseg.config import ConfigError, compose

    with pytest.raises(ConfigError, match="labeling=image with regions.method=slic"):
        compose(["labeling=image"])
    with pytest.raises(ConfigError, match="labeling=dominant with regions.method=image"):
        compose(["regions.method=image"])


def test_image_labels_run_end_to_end_and_resume(tmp_path):
    """Tags -> CAMs -> boundary MIL -> random walk -> stage 2, every file in the run dir,
    and a run killed after a fit evaluates the same stage-2 model on resume."""
    import json
    import shutil

    from helpers import load_script, rewind, tiny_overrides
    from test_loop import QUIET, read_csv, run

    from alseg.build import build_loop
    from alseg.config import load_run_config

    out = tmp_path / "tags"
    args = tiny_overrides(
        tmp_path, "experiment=image_labels_synthetic", "active.budget=20", "weak.walk_steps=8"
    )
    rows = run(args, out)
    assert len(rows) == 3
    for k in ("cam_mIoU", "confident_acc", "confident_coverage", "pseudo_mIoU"):
        assert k in rows[-1]
    for k in ("boundary_ods", "boundary_ois", "boundary_mf_ods", "boundary_mf_ois"):
        assert 0 <= float(rows[-1][k]) <= 100  # on the test split
    per_class = [k for k in rows[-1] if k.startswith("bF_")]
    assert per_class and all(0 <= float(rows[-1][k]) <= 100 for k in per_class)
    tagged: set[str] = set()
    for r in range(3):
        sel = read_csv(out / "selections" / f"round_{r:02d}.csv")
        assert all(int(x["region"]) == 0 for x in sel)  # the image is the region
        tagged |= {x["image"] for x in sel}
        for kind in ("cam_labels", "weak_labels"):  # a map per image tagged so far
            folder = out / kind / f"round_{r:02d}"
            assert (folder / "manifest.json").is_file()
            assert len(list(folder.glob("*.png"))) == len(tagged)
    for stage in ("", "_stage2", "_stage3"):  # the last two rounds' checkpoints are kept
        assert (out / "checkpoints" / f"round_02{stage}.pt").is_file()
    figure = load_script("image_labels_figure")  # the picture of a run in docs/results.md
    figure.main(out, None, 2, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    killed = tmp_path / "killed"
    shutil.copytree(out, killed)
    rewind(killed, 2, "fitted", metrics_rows=2)
    cfg = load_run_config(killed)
    resumed = build_loop(cfg, killed, resume=True, console=QUIET, progress=False).run()
    assert resumed[-1]["mIoU"] == pytest.approx(rows[-1]["mIoU"])
    assert resumed[-1]["pseudo_mIoU"] == pytest.approx(rows[-1]["pseudo_mIoU"])
    # the boundary network of the round comes back from its checkpoint
    assert resumed[-1]["boundary_mf_ods"] == pytest.approx(rows[-1]["boundary_mf_ods"])
    assert json.loads((killed / "state.json").read_text())["phase"] == "done"


# -- boundary F-measure ----------------------------------------------------------------------------
def test_label_boundaries_both_sides_and_void():
    from alseg.weak.boundary_eval import label_boundaries

    lab = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [255, 255, 255, 255]])
    expected = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]], dtype=bool)
    assert (label_boundaries(lab) == expected).all()  # void rows are not boundaries


def test_match_counts_one_to_one_within_the_tolerance():
    from alseg.weak.boundary_eval import match_counts

    gt = np.zeros((8, 8), bool)
    gt[:, 4] = True
    shifted = np.zeros((8, 8), bool)
    shifted[:, 5] = True
    assert match_counts(shifted, gt, 1.0) == (8, 8, 8)
    assert match_counts(shifted, gt, 0.5) == (0, 8, 8)
    double = shifted.copy()
    double[:, 3] = True  # two lines for one: only one of them can match
    assert match_counts(double, gt, 1.0) == (8, 16, 8)
    diagonal = np.zeros((8, 8), bool)
    diagonal[0, 3] = True  # sqrt(2) from (1, 4): out at 1.0, in at 1.5
    assert match_counts(diagonal, gt & (np.arange(8)[:, None] == 1), 1.0)[0] == 0
    assert match_counts(diagonal, gt & (np.arange(8)[:, None] == 1), 1.5)[0] == 1


def test_ods_and_ois_hand_counted():
    """Two 8x8 images, ground truth a vertical line each. Image A: at 0.4 a right line
    (P = R = 1) and at 0.8 nothing; image B: at 0.4 two lines (P 1/2, R 1), at 0.8 the
    right one only (P = R = 1). ODS: 0.4 -> counts (16, 24, 16): P 2/3, R 1, F 0.8;
    0.8 -> (8, 8, 16): P 1, R 1/2, F 2/3; ODS = 0.8 at 0.4. OIS: A at 0.4, B at 0.8 ->
    (16, 16, 16): F = 1."""
    from alseg.weak.boundary_eval import f_measure

    gt = np.zeros((8, 8), bool)
    gt[:, 4] = True
    a = np.zeros((8, 8))
    a[:, 4] = 0.5
    b = np.zeros((8, 8))
    b[:, 4] = 0.9
    b[:, 1] = 0.5
    s = f_measure([a, b], [gt, gt], thresholds=[0.4, 0.8], tolerance=1.0)
    assert s.ods == pytest.approx(0.8) and s.ods_threshold == 0.4
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(1.0)
    assert s.ois == pytest.approx(1.0)


def test_class_f_measures_of_semantic_maps_hand_counted():
    """An 8x8 image, class 0 left (cols 0-3), class 1 right: class 0's boundary is col 3,
    class 1's col 4; B = 0.9 on both columns. A right segmentation puts each column in its
    class: F = 1 for both. With B on col 4 only, a segmentation that says class 0
    everywhere gives class 0 that column (matched to col 3 within 1 px: F = 1) and class 1
    nothing (F = 0). Class 2 has no ground-truth boundary and is left out."""
    from alseg.weak.boundary_eval import class_boundaries, class_f_measures, semantic_maps

    lab = np.zeros((8, 8), int)
    lab[:, 4:] = 1
    gt = class_boundaries(lab, 3)
    assert gt[0][:, 3].all() and gt[0].sum() == 8 and gt[1][:, 4].all() and gt[1].sum() == 8
    assert not gt[2].any()
    B = np.zeros((8, 8))
    B[:, 3:5] = 0.9
    right = class_f_measures([semantic_maps(B, lab, 3)], [gt], [0, 1, 2], [0.5], 1.0)
    assert set(right) == {0, 1}
    assert right[0].ods == pytest.approx(1.0) and right[1].ods == pytest.approx(1.0)
    B1 = np.where(np.arange(8) == 4, 0.9, 0.0)[None].repeat(8, 0)  # col 4 only
    wrong = class_f_measures([semantic_maps(B1, np.zeros_like(lab), 3)], [gt], [0, 1], [0.5])
    assert wrong[0].ods == pytest.approx(1.0) and wrong[1].ods == 0.0
    # an image without the class counts its false positives
    empty = np.zeros((3, 8, 8), bool)
    two = class_f_measures(
        [semantic_maps(B, lab, 3), semantic_maps(B, lab, 3)], [gt, empty], [0], [0.5], 1.0
    )
    assert two[0].ods == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # P = 8/16, R = 8/8


def test_tag_loss_leaves_out_the_background_class():
    from alseg.models.segmentation import SegmentationModule
    from alseg.models.specs import TagSpec
    from alseg.weak.cam import ImageTagLoss

    net = torch.nn.Conv2d(3, 3, 1)
    m = SegmentationModule(net, 3, loss=ImageTagLoss(TagSpec("gap", background=True), 3))
    m.log = lambda *a, **k: None  # type: ignore[method-assign]
    logits = torch.randn(2, 3, 4, 4)
    tags = torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    batch = {"target": torch.zeros(2, 4, 4, dtype=torch.long), "region_classes": tags[:, None]}
    expected = tag_loss(logits[:, 1:].mean((2, 3)), tags[:, 1:])
    assert m._training_loss(logits, batch).item() == pytest.approx(expected.item())


def test_background_run_labels_background_where_no_cam_reaches_bg_score(tmp_path):
    """weak.background=true (class 0 of the synthetic scenes plays the background): the tag
    model never sees class 0, the pseudo labels hold it where no walked CAM (divided by its
    maximum) reaches weak.bg_score: bg_score=1 makes every pseudo label background,
    bg_score=0 almost none; the semantic-boundary F-measure leaves class 0 out."""
    from helpers import tiny_overrides
    from PIL import Image
    from test_loop import run

    base = ("experiment=image_labels_synthetic", "active.budget=20", "weak.walk_steps=8")
    args = tiny_overrides(tmp_path, *base, "active.rounds=1", "weak.background=true")
    share = {}
    for score in (1.0, 0.0):
        out = tmp_path / f"bg{score}"
        rows = run([*args, f"weak.bg_score={score}"], out)
        maps = list((out / "weak_labels" / "round_00").glob("*.png"))
        labels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in maps])
        share[score] = (labels == 0).mean()
        assert "bF_road" not in rows[-1] and 0 <= float(rows[-1]["boundary_mf_ods"]) <= 100
        assert "bF_sidewalk" in rows[-1]
    assert share[1.0] == 1.0 and share[0.0] < 0.05


def test_boundary_scores_use_the_data_sets_own_boundaries_where_given():
    """``boundary_scores``: without the data set's boundaries, those of the label maps
    (class 0 | class 1 halves: both classes scored); with SBD-style boundaries that say
    class 1 has none, only class 0 is scored."""
    from alseg.extensions.image_labels import BoundaryModule, boundary_scores
    from alseg.models.segmentation import OptimSpec, SegmentationModule

    torch.manual_seed(0)
    bnd = BoundaryModule(torch.nn.Conv2d(3, 2, 1), PathIndex(2), OptimSpec(), 255)
    seg = SegmentationModule(torch.nn.Conv2d(3, 2, 1), 2)
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[..., 4:] = 1
    batch = {"image": torch.rand(1, 3, 8, 8), "mask": mask, "index": torch.tensor([0])}
    names = ("left", "right")
    own = boundary_scores(bnd, seg, [batch], None, range(2), names, 1.0)
    assert {"bF_left", "bF_right", "boundary_mf_ods"} <= set(own)

    def sbd(index):
        out = np.zeros((2, 8, 8), bool)
        out[0][:, 3] = True
        return out

    given = boundary_scores(bnd, seg, [batch], sbd, range(2), names, 1.0)
    assert "bF_left" in given and "bF_right" not in given
    assert given["boundary_mf_ods"] == given["bF_left"]


def test_f_measure_agrees_with_pyedgeeval():
    """ODS on blurred, noisy boundary maps of random discs equals pyEdgeEval's (its counts
    at the same thresholds, BSDS's C++ matching and thinning) within 0.005; per map and
    threshold the matched counts differ by a few pixels (its thinning and its min-cost
    assignment vs our maximum matching)."""
    pytest.importorskip("pyEdgeEval")
    from pyEdgeEval.common.binary_label.evaluate_boundaries import (
        evaluate_boundaries_threshold,
    )
    from scipy.ndimage import gaussian_filter

    from alseg.weak.boundary_eval import THRESHOLDS, f_measure, label_boundaries

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:48, :48]
    probs, gts = [], []
    for _ in range(6):
        lab = np.zeros((48, 48), int)
        for k in range(4):
            y, x, r = rng.integers(0, 48), rng.integers(0, 48), rng.integers(5, 15)
            lab[(yy - y) ** 2 + (xx - x) ** 2 < r * r] = k + 1
        gt = label_boundaries(lab)
        p = gaussian_filter(gt.astype(float), 1.0) * 2 + rng.random((48, 48)) * 0.3
        probs.append(np.clip(p / p.max(), 0, 1))
        gts.append(gt)
    th = np.asarray(THRESHOLDS)
    for tol in (1.0, 2.0):
        diag = float(np.hypot(48, 48))
        counts = sum(
            np.stack(evaluate_boundaries_threshold(th, p, g, max_dist=tol / diag))
            for p, g in zip(probs, gts)
        )  # (count_r, sum_r, count_p, sum_p) x thresholds
        rec, prec = counts[0] / counts[1], counts[2] / np.maximum(counts[3], 1)
        theirs = np.max(2 * prec * rec / np.maximum(prec + rec, 1e-12))
        ours = f_measure(probs, gts, THRESHOLDS, tolerance=tol).ods
        assert ours == pytest.approx(theirs, abs=0.001), tol
    # the benchmarks' tolerance, a fraction of each image's diagonal (BSDS / SEAL 0.0075,
    # SBD's benchmark 0.02), on images of two sizes: 48x48 and 24x48 (cropped). (Below one
    # pixel, 0.0075 here, BSDS's approximate assignment can miss an exact overlap: one
    # match in 189 on these maps; ours is the exact maximum matching.)
    probs2, gts2 = probs[:3] + [p[:24] for p in probs[3:]], gts[:3] + [g[:24] for g in gts[3:]]
    for frac in (0.02, 0.05):
        counts = sum(
            np.stack(evaluate_boundaries_threshold(th, p, g, max_dist=frac))
            for p, g in zip(probs2, gts2)
        )
        rec, prec = counts[0] / counts[1], counts[2] / np.maximum(counts[3], 1)
        theirs = np.max(2 * prec * rec / np.maximum(prec + rec, 1e-12))
        ours = f_measure(probs2, gts2, THRESHOLDS, max_dist=frac).ods
        assert ours == pytest.approx(theirs, abs=0.001), frac


def test_f_measure_tolerance_is_a_share_of_each_image_diagonal():
    """30x40 (diagonal 50): max_dist 0.02 is 1 pixel, a prediction one pixel off matches;
    0.0075 (0.375 px) matches only exact overlaps."""
    from alseg.weak.boundary_eval import f_measure

    gt = np.zeros((30, 40), bool)
    gt[10, 5:35] = True
    shifted = np.roll(gt, 1, axis=0).astype(float)
    assert f_measure([shifted], [gt], [0.5], max_dist=0.02).ods == pytest.approx(1.0)
    assert f_measure([shifted], [gt], [0.5], max_dist=0.0075).ods == 0.0
    assert f_measure([gt.astype(float)], [gt], [0.5], max_dist=0.0075).ods == pytest.approx(1.0)


def test_tag_network_may_have_its_own_architecture():
    """weak.tag_arch builds stage 1 (the tag model) as another network; stage 2 keeps
    model.arch; an unknown name is a config error naming the choices."""
    from alseg.build import model_spec
    from alseg.config import ConfigError, compose
    from alseg.parts import build_parts
    from alseg.schema import settings

    cfg = compose(["experiment=image_labels_synthetic", "weak.tag_arch=Unet",
                   "data.num_train=4", "data.num_val=2", "data.num_test=2"])  # fmt: skip
    spec = model_spec(settings(cfg), build_parts(cfg, progress=False).train)
    assert type(spec.build(1).network).__name__ == "Unet"
    assert type(spec.build(2).network).__name__ == "DeepLabV3Plus"
    with pytest.raises(ConfigError, match="weak.tag_arch"):
        compose(["experiment=image_labels_synthetic", "weak.tag_arch=Deeplab"])


def test_pairs_and_walk_on_a_strided_grid_as_irn():
    """IRN's scale: B max-pooled and labels sampled to the stride grid, the loss on that
    grid; the walk on averaged scores, upsampled back; stride 1 changes nothing."""
    import torch

    from alseg.weak.paths import PathIndex, boundary_mil_loss, on_grid, random_walk, strided_walk

    torch.manual_seed(0)
    B = torch.rand(2, 10, 14)
    labels = torch.randint(0, 3, (2, 10, 14))
    grid_B, grid_lab = on_grid(B, labels, 4)
    assert grid_B.shape == (2, 3, 4) and grid_lab is not None and grid_lab.shape == (2, 3, 4)
    assert grid_B[0, 0, 0] == B[0, :4, :4].max() and grid_B[1, 2, 3] == B[1, 8:, 12:].max()
    assert set(grid_lab.unique().tolist()) <= {0, 1, 2}
    even = torch.randint(0, 3, (1, 12, 16))  # a multiple of the stride: each cell's first pixel
    assert torch.equal(on_grid(torch.rand(1, 12, 16), even, 4)[1], even[:, ::4, ::4])
    index = PathIndex(3)
    # the module's loss at stride 4 is the MIL loss of the grid maps
    expected = boundary_mil_loss(grid_B, grid_lab, index)
    got = boundary_mil_loss(*on_grid(B, labels, 4), index)  # type: ignore[arg-type]
    assert torch.equal(got, expected)
    assert on_grid(B, labels, 1)[0] is B
    scores = torch.rand(3, 10, 14)
    walked = strided_walk(scores, B[0], index, 10.0, 4, stride=2)
    pooled = torch.nn.functional.avg_pool2d(scores[None], 2, 2)[0]
    on = random_walk(pooled, on_grid(B[:1], None, 2)[0][0], index, 10.0, 4)
    up = torch.nn.functional.interpolate(on[None], scale_factor=2, mode="bilinear")[0]
    assert walked.shape == scores.shape and torch.allclose(walked, up)
    assert torch.equal(
        strided_walk(scores, B[0], index, 10.0, 4), random_walk(scores, B[0], index, 10.0, 4)
    )


def test_training_pairs_use_irns_sources():
    """IRN (misc/indexing.py, get_path_indices) trains on sources of rows 0 .. H - r and
    columns r - 1 .. W - r, whose every displacement stays inside: a loop over those
    sources and all displacements gives the loss's bags."""
    torch.manual_seed(1)
    H, W, r = 7, 9, 3
    idx = PathIndex(r)
    labels = torch.randint(0, 3, (1, H, W))
    B = torch.rand(1, H, W)
    same = diff = 0
    neg = pos = 0.0
    for y in range(H - (r - 1)):
        for x in range(r - 1, W - (r - 1)):
            for k, (dy, dx) in enumerate(idx.directions.tolist()):
                assert 0 <= y + dy < H and 0 <= x + dx < W  # always inside
                peak = max(float(B[0, y + oy, x + ox]) for oy, ox in idx.offsets[k].tolist())
                if labels[0, y, x] == labels[0, y + dy, x + dx]:
                    same, neg = same + 1, neg - math.log(1 + 1e-5 - peak)
                else:
                    diff, pos = diff + 1, pos - math.log(peak + 1e-5)
    s, d = idx.pair_labels(labels)
    assert (int(s.sum()), int(d.sum())) == (same, diff)
    want = (neg / same + pos / diff) / 2
    assert boundary_mil_loss(B, labels, idx).item() == pytest.approx(want, rel=1e-5)
