"""Feature/prototype stores and splits (SPEC 13): round trips and one-line rejections."""

import numpy as np
import pytest
import zarr

from ccma.errors import StoreError
from ccma.features import (FeatureSplit, FeatureStoreWriter, check_same_rows, read_features,
                           read_prototypes, write_features, write_prototypes)
from ccma.splits import load_splits, make_splits, save_splits


def unit_rows(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path, rng):
    path = tmp_path / "f.zarr"
    train = FeatureSplit(unit_rows(rng, 50, 8), rng.integers(0, 5, 50))
    test = FeatureSplit(unit_rows(rng, 20, 8), rng.integers(0, 5, 20))
    write_features(path, dataset="d", backbone="b", train=train, test=test, n_classes=5)
    return path, train, test


def test_round_trip(store):
    path, train, test = store
    fs = read_features(path)
    assert fs.attrs["complete"] is True and fs.dim == 8 and fs.n_classes == 5
    assert fs.train.embeddings.dtype == np.float16
    np.testing.assert_allclose(fs.train.embeddings, train.embeddings, atol=1e-3)
    assert np.array_equal(fs.test.labels, test.labels)


def one_line(exc_info):
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_incomplete_store_is_rejected(store):
    path, *_ = store
    zarr.open_group(str(path), mode="r+").attrs["complete"] = False
    with pytest.raises(StoreError) as e:
        read_features(path)
    assert str(path) in one_line(e) and "incomplete" in one_line(e)


def _corrupt(path, split, row, value):
    g = zarr.open_group(str(path), mode="r+")
    emb = g[f"{split}/embeddings"][...]
    emb[row] = value
    g[f"{split}/embeddings"][...] = emb


def test_unnormalised_rows_are_rejected(store):
    path, *_ = store
    _corrupt(path, "train", 7, 0.9)
    with pytest.raises(StoreError) as e:
        read_features(path)
    assert "train/embeddings row 7 is not L2-normalised" in one_line(e)


def test_nan_rows_are_rejected(store):
    path, *_ = store
    _corrupt(path, "test", 3, np.nan)
    with pytest.raises(StoreError) as e:
        read_features(path)
    assert "test/embeddings row 3 contains NaN or inf" in one_line(e)


def test_labels_out_of_range_are_rejected(store):
    path, *_ = store
    g = zarr.open_group(str(path), mode="r+")
    labels = g["train/labels"][...]
    labels[0] = 5
    g["train/labels"][...] = labels
    with pytest.raises(StoreError) as e:
        read_features(path)
    assert "train/labels outside 0..4" in one_line(e)


def test_teacher_student_mismatch(tmp_path, rng):
    labels = rng.integers(0, 3, 30)
    make = lambda name, lab, n: write_features(  # noqa: E731
        tmp_path / name, dataset="d", backbone=name, n_classes=3,
        train=FeatureSplit(unit_rows(rng, n, 4), lab), test=FeatureSplit(unit_rows(rng, 5, 4), labels[:5]))
    make("t.zarr", labels, 30)
    make("s.zarr", labels[:29], 29)
    make("o.zarr", labels[::-1].copy(), 30)
    t = read_features(tmp_path / "t.zarr")
    with pytest.raises(StoreError, match="train has 29 rows but the teacher store"):
        check_same_rows(t, read_features(tmp_path / "s.zarr"))
    with pytest.raises(StoreError, match="labels are in a different order"):
        check_same_rows(t, read_features(tmp_path / "o.zarr"))


def test_prototype_store(tmp_path, rng):
    path = tmp_path / "p.zarr"
    protos = unit_rows(rng, 3, 8)
    write_prototypes(path, protos, classnames=["a", "b", "c"], templates=["a photo of a {}."], backbone="t")
    ps = read_prototypes(path)
    assert ps.classnames == ["a", "b", "c"] and np.allclose(ps.prototypes, protos)
    zarr.open_group(str(path), mode="r+").attrs["classnames"] = ["a", "b"]
    with pytest.raises(StoreError) as e:
        read_prototypes(path)
    assert "has 3 prototypes but 2 class names" in one_line(e)


def test_missing_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        read_features(tmp_path / "nope.zarr")


def test_writer_resumes_and_refuses_other_shapes(tmp_path, rng):
    path = tmp_path / "w.zarr"
    kw = dict(dataset="d", backbone="b", n_train=10, n_test=4, dim=4, n_classes=2, chunk_rows=4)
    w = FeatureStoreWriter(path, **kw)
    w.write_chunk("train", 0, unit_rows(rng, 4, 4), np.zeros(4))
    with pytest.raises(StoreError, match="chunks missing"):
        w.finish()
    w2 = FeatureStoreWriter(path, **kw)  # reopened: remembers the finished chunk
    assert w2.done_chunks("train") == {0} and w2.n_chunks("train") == 3
    with pytest.raises(StoreError, match="different shape"):
        FeatureStoreWriter(path, **{**kw, "dim": 5})


def test_splits_are_stratified_and_seeded(tmp_path):
    labels = np.repeat(np.arange(4), 25)
    a = make_splits(labels, n_test=7, per_class=10, seed=0)
    assert np.bincount(labels[a.calibration]).tolist() == [10] * 4
    assert len(np.intersect1d(a.pool, a.calibration)) == 0 and len(a.pool) == 60
    assert np.array_equal(a.calibration, make_splits(labels, 7, 10, seed=0).calibration)
    assert not np.array_equal(a.calibration, make_splits(labels, 7, 10, seed=1).calibration)
    save_splits(tmp_path / "s.npz", a)
    b = load_splits(tmp_path / "s.npz", n_train=100, n_test=7)
    assert np.array_equal(a.pool, b.pool) and b.test.tolist() == list(range(7))
    with pytest.raises(StoreError, match="outside the feature store"):
        load_splits(tmp_path / "s.npz", n_train=50)


def test_atomic_outputs_get_the_usual_mode(tmp_path):
    import os

    from ccma.atomic import atomic_path

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with atomic_path(tmp_path / "d", directory=True) as tmp:
            (tmp / "a").write_text("y")
    finally:
        os.umask(mask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_failed_atomic_write_leaves_nothing(tmp_path):
    from ccma.atomic import atomic_path

    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert list(tmp_path.iterdir()) == []
