import numpy as np
import pytest

import alseg.data.regions as regions_module
from alseg.data.regions import (
    ChunkedMaps,
    RegionSet,
    RegionStats,
    compute_regions,
    grid_regions,
    relabel_consecutive,
    seeds_regions,
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
    folders = list((tmp_path / "regions").iterdir())
    assert len(folders) == 1 and len(list(folders[0].glob("chunk-*.npz"))) == 1
    b = compute_regions(lambda i: 1 / 0, 10, "slic", params, ds.fingerprint, tmp_path, 1, False)
    for x, y in zip(a.maps, b.maps):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a.region_sizes(), b.region_sizes())
    np.testing.assert_array_equal(b.region_sizes(), RegionSet(list(b.maps)).region_sizes())
    # other parameters -> another cache entry
    compute_regions(ds.image_uint8, 10, "grid", {"cell": 8}, ds.fingerprint, tmp_path, 1, False)
    assert len(list((tmp_path / "regions").iterdir())) == 2


def test_killed_computation_resumes_at_the_missing_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(regions_module, "CHUNK", 4)
    ds = SyntheticScenes("train", 10, 32)
    params = {"n_segments": 12, "compactness": 10.0}
    full = compute_regions(ds.image_uint8, 10, "slic", params, ds.fingerprint, tmp_path, 1, False)
    (folder,) = (tmp_path / "regions").iterdir()
    assert sorted(p.name for p in folder.iterdir()) == [
        "chunk-00000.npz",
        "chunk-00001.npz",
        "chunk-00002.npz",
    ]
    (folder / "chunk-00001.npz").unlink()  # as if killed while computing images 4..7
    asked = []

    def image(i):
        asked.append(i)
        return ds.image_uint8(i)

    stats = RegionStats()
    again = compute_regions(
        image, 10, "slic", params, ds.fingerprint, tmp_path, 1, False, stats=stats
    )
    assert asked == [4, 5, 6, 7] and stats.computed == 4
    for x, y in zip(full.maps, again.maps):
        np.testing.assert_array_equal(x, y)


def test_large_region_sets_are_read_per_image(tmp_path, monkeypatch):
    monkeypatch.setattr(regions_module, "CHUNK", 3)
    ds = SyntheticScenes("train", 7, 32)
    params = {"cell": 8}
    mem = compute_regions(ds.image_uint8, 7, "grid", params, ds.fingerprint, tmp_path, 1, False)
    lazy = compute_regions(
        ds.image_uint8, 7, "grid", params, ds.fingerprint, tmp_path, 1, False, max_memory_mb=0
    )
    assert isinstance(lazy.maps, ChunkedMaps) and isinstance(mem.maps, list)
    assert len(lazy) == 7 and lazy.total == mem.total
    for i in range(7):
        np.testing.assert_array_equal(lazy.maps[i], mem.maps[i])
        assert lazy.map_tensor(i).equal(mem.map_tensor(i))
    np.testing.assert_array_equal(lazy.region_sizes(), mem.region_sizes())


def test_seeds_regions():
    pytest.importorskip("cv2")
    ds = SyntheticScenes("train", 1, 64)
    m = seeds_regions(ds.image_uint8(0), 48)
    assert m.shape == (64, 64)
    assert set(np.unique(m)) == set(range(m.max() + 1))
    assert 8 <= m.max() + 1 <= 64  # about the requested number
    np.testing.assert_array_equal(m, seeds_regions(ds.image_uint8(0), 48))  # deterministic


def test_corrupt_cache_and_bad_method(tmp_path):
    ds = SyntheticScenes("train", 4, 32)
    compute_regions(ds.image_uint8, 4, "grid", {"cell": 8}, ds.fingerprint, tmp_path, 1, False)
    (folder,) = (tmp_path / "regions").iterdir()
    (folder / "chunk-00000.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="chunk-00000.npz is unreadable"):
        compute_regions(ds.image_uint8, 4, "grid", {"cell": 8}, ds.fingerprint, tmp_path, 1, False)
    with pytest.raises(ValueError, match="choose one of"):
        compute_regions([], 0, "watershed", {}, "fp", None)
