"""Feature/prototype stores and splits (docs/method.md §13): round trips and one-line rejections."""

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


# ------------------------------------------------------------------ damaged stores

def _truncate(path, keep=None):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2 if keep is None else keep])


DAMAGE = {  # what is done to the store -> the array named and what the message says is wrong
    "truncated chunk": (lambda p: _truncate(p / "train/embeddings/c/0/0"), "train/embeddings",
                        "has a truncated or corrupt chunk (RuntimeError: Zstd decompression error"),
    "garbage chunk": (lambda p: (p / "test/labels/c/0").write_bytes(b"\x00garbage" * 9), "test/labels",
                      "has a truncated or corrupt chunk"),
    "truncated zarr.json": (lambda p: _truncate(p / "test/embeddings/zarr.json"), "test/embeddings",
                            "has unreadable metadata (zarr.json: JSONDecodeError"),
    "deleted label chunk": (lambda p: (p / "train/labels/c/0").unlink(), "train/labels",
                            "lacks 1 of its 1 chunk files (deleted or never written)"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_store_names_store_array_problem_and_remedy(tmp_path, rng, damage):
    path = tmp_path / "features" / "d" / "b.zarr"
    labels = np.zeros(50, dtype=np.int64)  # all class 0: a chunk zarr must store all the same
    write_features(path, dataset="d", backbone="b", train=FeatureSplit(unit_rows(rng, 50, 8), labels),
                   test=FeatureSplit(unit_rows(rng, 20, 8), rng.integers(0, 5, 20)), n_classes=5,
                   attrs={"library": "transformers"})
    do, array, problem = DAMAGE[damage]
    do(path)
    with pytest.raises(StoreError) as e:
        read_features(path)
    assert one_line(e).startswith(f"{path}: array '{array}' {problem}")
    assert one_line(e).endswith("; delete the store and rerun the `ccma embed --dataset d --backbone b` "
                                "that wrote it")


def test_damaged_prototypes_and_unreadable_store_name_their_command(tmp_path, rng):
    path = tmp_path / "prototypes" / "d" / "t.zarr"
    write_prototypes(path, unit_rows(rng, 3, 8), classnames=["a", "b", "c"], templates=["{}"], backbone="t",
                     attrs={"dataset": "d"})
    _truncate(path / "prototypes/c/0/0", keep=5)
    with pytest.raises(StoreError) as e:
        read_prototypes(path)
    assert one_line(e).startswith(f"{path}: array 'prototypes' has a truncated or corrupt chunk (")
    assert one_line(e).endswith("rerun the `ccma prototypes --dataset d --backbone t` that wrote it")
    _truncate(path / "zarr.json")  # the attributes are gone: the message cannot tell synth apart
    with pytest.raises(StoreError) as e:
        read_prototypes(path)
    assert one_line(e).startswith(f"{path}: is not a readable Zarr store (JSONDecodeError: ")
    assert one_line(e).endswith("rerun the `ccma prototypes --dataset d --backbone t` (or `ccma synth`) "
                                "that wrote it")


def test_labels_of_older_stores_may_omit_class_zero_chunks(tmp_path):
    """Stores written before labels got fill value -1 have fill value 0, and zarr did not
    store their chunks of class-0 labels: those still read, as zeros."""
    path = tmp_path / "old.zarr"
    w = FeatureStoreWriter(path, dataset="d", backbone="b", n_train=4, n_test=2, dim=2, n_classes=2,
                           chunk_rows=2)
    g = zarr.open_group(str(path), mode="r+")
    for split, n in (("train", 4), ("test", 2)):  # as the writer made them before
        del g[f"{split}/labels"]
        g.create_array(f"{split}/labels", shape=(n,), dtype="int64", chunks=(2,), fill_value=0)
    unit = np.tile([[0.6, 0.8]], (2, 1))
    for split, chunk, labels in (("train", 0, [0, 0]), ("train", 1, [1, 0]), ("test", 0, [0, 1])):
        w.write_chunk(split, chunk, unit, np.array(labels))
    w.finish()
    assert g["train/labels"].nchunks_initialized == 1  # the all-zero chunk was not stored
    assert read_features(path).train.labels.tolist() == [0, 0, 1, 0]


def test_new_stores_store_every_label_chunk(tmp_path):
    path = tmp_path / "new.zarr"
    w = FeatureStoreWriter(path, dataset="d", backbone="b", n_train=2, n_test=2, dim=2, n_classes=2,
                           chunk_rows=2)
    for split in ("train", "test"):
        w.write_chunk(split, 0, np.tile([[0.6, 0.8]], (2, 1)), np.zeros(2))
    w.finish()
    assert zarr.open_group(str(path), mode="r")["train/labels"].nchunks_initialized == 1


# ------------------------------------------------------------------ interrupted creation

WRITER = dict(dataset="d", backbone="b", n_train=10, n_test=4, dim=4, n_classes=2, chunk_rows=4)


def _group_only(path):
    zarr.open_group(str(path), mode="w", zarr_format=3)


def _some_arrays(path):  # killed between create_array calls, attributes never set
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.create_array("train/embeddings", shape=(10, 4), dtype="float16", chunks=(4, 4))
    g.create_array("train/labels", shape=(10,), dtype="int64", chunks=(4,))


def _metadata_only(path):  # every array created, killed before the attributes
    _some_arrays(path)
    g = zarr.open_group(str(path), mode="r+")
    g.create_array("test/embeddings", shape=(4, 4), dtype="float16", chunks=(4, 4))
    g.create_array("test/labels", shape=(4,), dtype="int64", chunks=(4,))


@pytest.mark.parametrize("state", [lambda p: p.mkdir(), _group_only, _some_arrays, _metadata_only],
                         ids=["empty folder", "group only", "some arrays", "metadata only"])
def test_writer_recreates_a_store_whose_creation_was_cut_short(tmp_path, rng, state):
    """What a job killed while creating a store left (before creation was atomic): no chunk
    was written, so the writer creates the store afresh instead of refusing it forever."""
    path = tmp_path / "w.zarr"
    state(path)
    w = FeatureStoreWriter(path, **WRITER)
    assert w.done_chunks("train") == set() and w.n_chunks("train") == 3
    rows = {"train": unit_rows(rng, 10, 4), "test": unit_rows(rng, 4, 4)}
    for split in ("train", "test"):
        for c in range(w.n_chunks(split)):
            span = w.chunk_slice(split, c)
            w.write_chunk(split, c, rows[split][span], np.ones(span.stop - span.start))
    w.finish()
    store = read_features(path)
    np.testing.assert_allclose(store.train.embeddings, rows["train"], atol=1e-3)
    assert store.test.labels.tolist() == [1] * 4


def test_writer_refuses_a_damaged_store_that_holds_chunks(tmp_path, rng):
    path = tmp_path / "w.zarr"
    w = FeatureStoreWriter(path, **WRITER)
    w.write_chunk("train", 0, unit_rows(rng, 4, 4), np.zeros(4))
    (path / "zarr.json").write_text("{")
    with pytest.raises(StoreError) as e:
        FeatureStoreWriter(path, **WRITER)
    assert one_line(e).startswith(f"{path}: exists but is not a readable Zarr store (JSONDecodeError")
    assert one_line(e).endswith("; delete it to re-embed")


# ------------------------------------------------------------------ temporaries of killed writes

DEAD = 2 ** 22 + 1  # above Linux's largest pid_max: never a running process


def test_stale_temporaries_are_removed_and_live_ones_kept(tmp_path):
    import os

    from ccma import atomic

    dead, me, host = DEAD, os.getpid(), atomic.HOST
    old = atomic.STARTED - 60
    temps = {
        f".f.txt.tmp-{dead}@{host}-a1": (old, False),          # killed writer here: removed
        f".f.txt.tmp-{dead}@{host}-d1": (old, False),          # the same, a folder
        f".f.txt.tmp-{dead}@elsewhere-b2": (old, False),       # another host: older than us, removed
        ".f.txt.tmp-x7q2": (old, False),                        # written before writers were named
        f".f.txt.tmp-{me}@{host}-c3": (old, True),             # its writer still runs: kept
        f".f.txt.tmp-{dead}@{host}-e4": (atomic.STARTED + 1, True),  # newer than this process
        f".g.txt.tmp-{dead}@{host}-f5": (old, True),           # another target's
    }
    for name, (mtime, _) in temps.items():
        entry = tmp_path / name
        if "-d1" in name:
            entry.mkdir()
            (entry / "zarr.json").write_text("{}")
        else:
            entry.write_text("half")
        os.utime(entry, (mtime, mtime))
    with atomic.atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("whole")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"f.txt"} | {name for name, (_, kept) in temps.items() if kept}
