import numpy as np
import torch

from alseg.data.labels import NO_CLASS
from alseg.data.oracle import ClickCost, SimulatedOracle, region_label_counts
from alseg.data.regions import RegionSet

# two images of 2x4; image 0 has regions 0 | 1 (left/right halves), image 1 one region
MAPS = [np.array([[0, 0, 1, 1], [0, 0, 1, 1]]), np.zeros((2, 4), dtype=np.int64)]
MASKS = [
    torch.tensor([[2, 2, 255, 255], [1, 2, 255, 0]]),
    torch.tensor([[1, 1, 0, 0], [0, 1, 255, 255]]),
]


def oracle(label_type="dominant"):
    return SimulatedOracle(lambda i: MASKS[i], RegionSet(MAPS), 3, label_type, ClickCost(1.0))


def test_counts():
    c = region_label_counts(MASKS[0], torch.from_numpy(MAPS[0]), 2, 3, 255)
    assert c.tolist() == [[0, 1, 3, 0], [1, 0, 0, 3]]


def test_dominant_answers_and_void_majority():
    a = oracle().annotate(np.array([0, 1, 2]))
    # region 0: class 2 (3 of 4); region 1: void majority -> no usable class; image 1: tie
    # between 0 and 1 (3 each) is broken towards the lower class id
    assert a.classes.tolist() == [2, NO_CLASS, 0]
    assert a.costs.tolist() == [1.0, 1.0, 1.0]
    assert a.label_type == "dominant"


def test_pixel_answers_refer_to_pixels():
    a = oracle("pixel").annotate(np.array([2]))
    assert a.classes.tolist() == [NO_CLASS] and a.total_cost == 1.0


def test_multiclass_trims_boundary_band_and_counts_clicks():
    from alseg.data.oracle import multiclass_answers, trimmed_interior

    # 12x12 image, two regions: left 6 columns (0) and right (1)
    regions = torch.zeros(12, 12, dtype=torch.long)
    regions[:, 6:] = 1
    inner = trimmed_interior(regions, 5)
    # band: thick boundary at columns 5|6, dilated by 5x5 -> columns 3..8 are trimmed
    assert inner[:, :3].all() and not inner[:, 3:9].any() and inner[:, 9:].all()
    mask = torch.zeros(12, 12, dtype=torch.long)
    mask[:, 4] = 2  # class 2 only inside region 0's band: trimmed away
    mask[0, 0] = 1  # class 1 deep inside region 0
    mask[5, 10] = 255  # void inside region 1
    bits = multiclass_answers(mask, regions, 2, 3, 255, void_bit=True)
    assert bits.tolist() == [[True, True, False, False], [True, False, False, True]]
    assert multiclass_answers(mask, regions, 2, 3, 255, void_bit=False).shape == (2, 3)
    # a region that lies entirely in the band answers from all of its pixels
    thin = torch.zeros(12, 12, dtype=torch.long)
    thin[:, 5:7] = 1
    thin[:, 7:] = 2
    m2 = torch.full((12, 12), 0)
    m2[:, 5:7] = 2
    assert multiclass_answers(m2, thin, 3, 3, 255, False)[1].tolist() == [False, False, True]


def test_multiclass_oracle_costs_one_click_per_class():
    maps = [np.array([[0, 0, 1, 1], [0, 0, 1, 1]])]
    masks = [torch.tensor([[0, 1, 2, 2], [1, 0, 2, 255]])]
    o = SimulatedOracle(lambda i: masks[i], RegionSet(maps), 3, "multiclass", trim_kernel=1)
    a = o.annotate(np.array([0, 1]))
    assert a.bits.tolist() == [[True, True, False], [False, False, True]]
    assert a.costs.tolist() == [2.0, 1.0] and o.query_costs(np.array([0, 1])).tolist() == [2.0, 1.0]
    assert a.classes.tolist() == [NO_CLASS, 2]  # one-hot answers also name their class
    ov = SimulatedOracle(
        lambda i: masks[i], RegionSet(maps), 3, "multiclass", void_bit=True, trim_kernel=1
    )
    assert ov.annotate(np.array([1])).costs.tolist() == [2.0]  # the void bit is a click
