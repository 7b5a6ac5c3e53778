import numpy as np
import pytest

from alseg.data.labels import NO_CLASS, Annotations, LabelStore


def ann(ids, classes, label_type="dominant", costs=None):
    return Annotations(ids, label_type, classes, np.ones(len(ids)) if costs is None else costs)


def test_add_query_and_spent():
    store = LabelStore(10, 3)
    store.add(ann([1, 4], [2, NO_CLASS]), round_index=0)
    store.add(ann([7], [NO_CLASS], "pixel", [2.5]), round_index=1)
    assert store.labeled_mask().nonzero()[0].tolist() == [1, 4, 7]
    assert store.spent() == 4.5 and store.spent(0) == 2 and store.spent(1) == 2.5
    t = store.region_targets()
    assert t[1] == 2 and t[4] == NO_CLASS and t[7] == -1 and t[0] == NO_CLASS


def test_no_region_labeled_twice():
    store = LabelStore(5, 3)
    store.add(ann([1], [0]), 0)
    with pytest.raises(ValueError, match="already labeled"):
        store.add(ann([2, 1], [0, 0]), 1)
    with pytest.raises(ValueError, match="same region twice"):
        store.add(ann([3, 3], [0, 0]), 1)
    with pytest.raises(ValueError, match="out of range"):
        store.add(ann([5], [0]), 1)
    with pytest.raises(ValueError, match="answer classes"):
        store.add(ann([3], [7]), 1)
    assert store.labeled_mask().sum() == 1  # failed adds changed nothing


def test_save_load_roundtrip_is_atomic(tmp_path):
    store = LabelStore(6, 4)
    store.add(ann([0, 5], [3, 1], costs=[1.0, 2.0]), 2)
    path = tmp_path / "labels" / "round_02.npz"
    store.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["round_02.npz"]  # no temp file left
    other = LabelStore.from_file(path, 6, 4)
    for k, v in store.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_corrupt_or_foreign_file_gives_clear_error_and_keeps_store(tmp_path):
    store = LabelStore(6, 4)
    store.add(ann([2], [1]), 0)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="bad.npz is corrupt"):
        store.load(bad)
    other = LabelStore(7, 4)
    other.save(tmp_path / "other.npz")
    with pytest.raises(ValueError, match="7 regions, this pool has 6"):
        store.load(tmp_path / "other.npz")
    assert store.labeled_mask().nonzero()[0].tolist() == [2]


def test_memory_is_per_region_not_per_pixel():
    store = LabelStore(3000 * 8192, 19)
    nbytes = sum(v.nbytes for v in store.state_dict().values())
    assert nbytes < 300 * 2**20  # a few hundred MB for Cityscapes x 8,192 regions


def test_multiclass_bits_are_packed_and_round_trip(tmp_path):
    from alseg.data.labels import MULTI

    store = LabelStore(5, 10)  # 11 bits (C + void) -> 2 bytes per region
    bits = np.zeros((2, 11), bool)
    bits[0, [1, 7]] = True
    bits[1, [3]] = True
    store.add(Annotations([1, 3], "multiclass", [NO_CLASS, 3], [2.0, 1.0], bits=bits), 0)
    assert store.bits is not None and store.bits.shape == (5, 2) and store.bits.dtype == np.uint8
    assert store.answer_bits(np.array([1, 3])).tolist() == bits.tolist()
    t = store.region_targets()
    assert t[1] == MULTI and t[3] == 3 and t[0] == NO_CLASS
    sets = store.class_sets(np.array([1, 3, 4]))
    assert sets.shape == (3, 10) and sets[0, [1, 7]].all() and sets[1, 3] and not sets[2].any()
    store.save(tmp_path / "l.npz")
    other = LabelStore.from_file(tmp_path / "l.npz", 5, 10)
    assert other.answer_bits(np.arange(5)).tolist() == store.answer_bits(np.arange(5)).tolist()
    with pytest.raises(ValueError, match="bits are given exactly for multiclass"):
        Annotations([0], "dominant", [1], [1.0], bits=bits[:1])
