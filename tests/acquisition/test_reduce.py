import math

import pytest
import torch

from alseg.acquisition.reduce import (
    classbal_weights,
    minmax_normalize,
    region_class_counts,
    region_majority,
    region_reduce,
)


def loop_reduce(values, regions, num_regions, reduce):
    """The obvious per-region loop."""
    out = []
    for r in range(num_regions):
        sel = values[regions == r]
        if sel.numel() == 0:
            out.append(torch.zeros(values.shape[regions.dim() :]))
        elif reduce == "mean":
            out.append(sel.float().mean(0))
        elif reduce == "sum":
            out.append(sel.float().sum(0))
        else:
            out.append(sel.float().max(0).values)
    return torch.stack(out)


@pytest.mark.parametrize("reduce", ["mean", "sum", "max"])
@pytest.mark.parametrize("trailing", [(), (3,)])
def test_region_reduce_equals_loop(reduce, trailing):
    g = torch.Generator().manual_seed(1)
    regions = torch.randint(0, 9, (2, 7, 5), generator=g)  # region 9 stays empty
    values = torch.randn(2, 7, 5, *trailing, generator=g)
    got = region_reduce(values, regions, 10, reduce)
    want = loop_reduce(values, regions, 10, reduce)
    assert got.shape == (10, *trailing)
    torch.testing.assert_close(got, want)


def test_region_reduce_known_answer_and_errors():
    values = torch.tensor([[1.0, 3.0], [5.0, 7.0]])
    regions = torch.tensor([[0, 0], [1, 0]])
    assert region_reduce(values, regions, 2, "mean").tolist() == pytest.approx([11 / 3, 5.0])
    assert region_reduce(values, regions, 2, "max").tolist() == [7.0, 5.0]
    with pytest.raises(ValueError, match="reduce='median'"):
        region_reduce(values, regions, 2, "median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must start with regions shape"):
        region_reduce(values[0], regions, 2)


def test_majority_and_counts():
    classes = torch.tensor([[0, 1, 1], [2, 2, 0]])
    regions = torch.tensor([[0, 0, 0], [1, 1, 1]])
    counts = region_class_counts(classes, regions, 2, 3)
    assert counts.tolist() == [[1, 2, 0], [1, 0, 2]]
    assert region_majority(classes, regions, 2, 3).tolist() == [1, 2]


def test_classbal_weights_match_cai():
    # 4 regions predicted class 0, 1 region class 2, none class 1
    w = classbal_weights(torch.tensor([0, 0, 0, 0, 2]), 3)
    torch.testing.assert_close(w, torch.tensor([math.exp(-0.8), 1.0, math.exp(-0.2)]))


def test_minmax():
    assert minmax_normalize(torch.tensor([2.0, 4.0, 3.0])).tolist() == [0.0, 1.0, 0.5]
    assert minmax_normalize(torch.tensor([5.0, 5.0])).tolist() == [0.0, 0.0]
