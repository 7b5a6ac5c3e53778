import numpy as np
import pytest

from alseg.data.regions import (
    RegionSet,
    compute_regions,
    grid_regions,
    load_region_set,
    relabel_consecutive,
    slic_regions,
)
from alseg.data.synthetic import SyntheticScenes


def test_grid_known_answer():
    g = grid_regions(3, 5, 2)
    assert g.tolist() == [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]]


def test_relabel_and_offsets():
    m = relabel_consecutive(np.array([[5, 5, 9], [2, 9, 9]]))
    assert m.tolist() == [[1, 1, 2], [0, 2, 2]]
    rs = RegionSet([m, np.zeros((2, 2), np.int32)])
    assert rs.num_regions.tolist() == [3, 1] and rs.offsets.tolist() == [0, 3, 4]
    imgs, local = rs.split_ids(np.array([0, 2, 3]))
    assert imgs.tolist() == [0, 0, 1] and local.tolist() == [0, 2, 0]
    assert rs.region_sizes().tolist() == [1, 2, 3, 4]


def test_slic_ids_are_consecutive():
    ds = SyntheticScenes("train", 1, 32)
    m = slic_regions(ds.image_uint8(0), 16, 10.0)
    assert m.shape == (32, 32)
    assert set(np.unique(m)) == set(range(m.max() + 1))


def test_cache_roundtrip_and_reuse(tmp_path):
    ds = SyntheticScenes("train", 10, 32)
    params = {"n_segments": 12, "compactness": 10.0}
    a = compute_regions(ds.image_uint8, 10, "slic", params, ds.fingerprint, tmp_path, 2, False)
    files = list((tmp_path / "regions").glob("*.npz"))
    assert len(files) == 1
    files[0].write_bytes(files[0].read_bytes())  # cache hit must come from the file
    b = compute_regions(lambda i: 1 / 0, 10, "slic", params, ds.fingerprint, tmp_path, 1, False)
    for x, y in zip(a.maps, b.maps):
        np.testing.assert_array_equal(x, y)
    # other parameters -> another cache entry
    compute_regions(ds.image_uint8, 10, "grid", {"cell": 8}, ds.fingerprint, tmp_path, 1, False)
    assert len(list((tmp_path / "regions").glob("*.npz"))) == 2


def test_corrupt_cache_and_bad_method(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="x.npz is unreadable"):
        load_region_set(bad)
    with pytest.raises(ValueError, match="choose one of"):
        compute_regions([], 0, "seeds", {}, "fp", None)
