import numpy as np
import torch

from alseg.data.labels import NO_CLASS
from alseg.data.oracle import ClickCost, SimulatedOracle, region_class_counts
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
    c = region_class_counts(MASKS[0], torch.from_numpy(MAPS[0]), 2, 3, 255)
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
