"""import-features / import-prototypes: embeddings made elsewhere become stores that splits,
run and the readers take exactly as embed's."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ccma import record
from ccma.cli import main
from ccma.errors import CCMAError
from ccma.features import feature_path, prototype_path, read_features, read_prototypes
from ccma.importing import import_features, import_prototypes

K, D_T, D_S = 3, 8, 6


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def files(tmp_path):
    """Teacher rows as .npz (unnormalised, with paths), student rows as Parquet, prototypes
    as .npz: 90 rows, 60 train / 30 test interleaved, K=3 separable classes."""
    rng = np.random.default_rng(0)
    labels = np.arange(90) % K
    split = np.where(np.arange(90) % 3 == 2, "test", "train")
    centres_t = rng.normal(size=(K, D_T)) * 4
    teacher = centres_t[labels] + rng.normal(size=(90, D_T))
    student = _unit(rng.normal(size=(K, D_S))[labels] * 4 + rng.normal(size=(90, D_S)))
    paths = np.array([f"img/{i:03d}.png" for i in range(90)])
    np.savez(tmp_path / "teacher.npz", embeddings=teacher, labels=labels, split=split, paths=paths,
             classnames=np.array(["cat", "dog", "owl"]))
    pq.write_table(pa.table({"embedding": pa.array(student.astype(np.float32).tolist()),
                             "label": labels, "split": split}), tmp_path / "student.parquet")
    np.savez(tmp_path / "protos.npz", prototypes=_unit(centres_t), classnames=np.array(["cat", "dog", "owl"]))
    return tmp_path, teacher, student, labels, split


def test_end_to_end_import_splits_and_run(files, capsys):
    d, teacher, student, labels, split = files
    common = ["--data-dir", str(d / "data"), "--dataset", "mine"]
    # the teacher rows are not unit norm: refused in one line naming the file, then normalised
    assert main(["import-features", *common, "--backbone", "t", str(d / "teacher.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "teacher.npz: embeddings row 0 is not L2-normalised" in err
    assert main(["import-features", *common, "--backbone", "t", "--normalize", str(d / "teacher.npz")]) == 0
    assert main(["import-features", *common, "--backbone", "s", "--dtype", "float32",
                 str(d / "student.parquet")]) == 0
    assert main(["import-prototypes", *common, "--backbone", "t", str(d / "protos.npz")]) == 0
    assert "zero-shot test accuracy 1.0000" in capsys.readouterr().out

    t = read_features(feature_path(d / "data", "mine", "t"))
    train, test = split == "train", split == "test"
    np.testing.assert_allclose(t.train.embeddings, _unit(teacher[train]), atol=2e-3)
    np.testing.assert_array_equal(t.test.labels, labels[test])
    assert t.attrs["classnames"] == ["cat", "dog", "owl"] and t.attrs["init"] == "imported"
    s = read_features(feature_path(d / "data", "mine", "s"))
    np.testing.assert_array_equal(s.test.embeddings, student[test].astype(np.float32))
    assert read_prototypes(prototype_path(d / "data", "mine", "t")).classnames == ["cat", "dog", "owl"]

    assert main(["splits", *common, "--teacher-backbone", "t", "--calibration-per-class", "3"]) == 0
    assert main(["run", *common, "--teacher-backbone", "t", "--student-backbone", "s", "--strategy", "random",
                 "--seed", "0", "--rounds", "3", "--max-epochs", "20", "--patience", "3"]) == 0
    rows, _ = record.read_rows(record.run_path(d / "data", "mine", "random", 0))
    assert [r["n_labeled"] for r in rows] == [3, 6, 9]
    assert all(r["teacher_zero_shot_accuracy"] == 1.0 for r in rows)


def test_paths_are_kept_and_fingerprinted(files):
    d, *_ = files
    out, counts = import_features(d / "data", "mine", "t", d / "teacher.npz", normalize=True)
    assert counts == {"train": 60, "test": 30}
    import zarr

    group = zarr.open_group(str(out), mode="r")
    assert group["test/paths"][...].tolist()[:2] == ["img/002.png", "img/005.png"]
    assert group.attrs["row_fingerprints"]["train"] != group.attrs["row_fingerprints"]["test"]


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("change, message", [
    (dict(embeddings=np.full((4, 2), np.nan)), "embeddings row 0 contains NaN or inf"),
    (dict(labels=np.array([0, 1, -1, 0])), "labels must lie in 0..1"),
    (dict(labels=np.array([0.5, 1, 0, 0])), "labels must be integers"),
    (dict(labels=np.array([0, 1, 0])), "labels have shape (3,), expected (4,)"),
    (dict(split=np.array(["train", "val", "test", "train"])), "split holds ['val']"),
    (dict(split=np.array(["train"] * 4)), "no 'test' rows"),
    (dict(embeddings=np.zeros(4)), "must be a non-empty numeric (rows, dim) matrix"),
])
def test_bad_feature_files_are_one_line_errors_naming_the_file(tmp_path, change, message):
    good = dict(embeddings=np.eye(4)[:, :2] + np.eye(4)[:, 2:], labels=np.array([0, 1, 0, 1]),
                split=np.array(["train", "train", "test", "test"]))
    good["embeddings"] = _unit(good["embeddings"] + 0.1)
    f = _npz(tmp_path / "x.npz", **{**good, **change})
    with pytest.raises(CCMAError) as exc:
        import_features(tmp_path / "data", "ds", "b", f)
    assert str(exc.value).startswith(f"{f}: ") and message in str(exc.value)
    assert "\n" not in str(exc.value)
    assert not feature_path(tmp_path / "data", "ds", "b").exists()


def test_missing_arrays_unknown_format_and_existing_store(tmp_path):
    f = _npz(tmp_path / "x.npz", embeddings=np.eye(2))
    with pytest.raises(CCMAError, match="lacks the arrays labels, split"):
        import_features(tmp_path, "ds", "b", f)
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(CCMAError, match="unknown format '.csv'"):
        import_features(tmp_path, "ds", "b", tmp_path / "x.csv")
    ok = _npz(tmp_path / "ok.npz", embeddings=np.eye(2), labels=np.array([0, 1]), split=np.array(["train", "test"]))
    import_features(tmp_path, "ds", "b", ok)
    with pytest.raises(CCMAError, match="exists; pass --overwrite"):
        import_features(tmp_path, "ds", "b", ok)
    import_features(tmp_path, "ds", "b", ok, overwrite=True)


def test_bare_npy_with_companion_files(tmp_path):
    np.save(tmp_path / "e.npy", np.eye(3, dtype=np.float16))
    np.save(tmp_path / "l.npy", np.array([0, 1, 2]))
    np.save(tmp_path / "s.npy", np.array(["train", "train", "test"]))
    out, counts = import_features(tmp_path, "ds", "b", tmp_path / "e.npy", labels=tmp_path / "l.npy",
                                  split=tmp_path / "s.npy", classnames=["a", "b", "c"])
    store = read_features(out)
    assert counts == {"train": 2, "test": 1} and store.n_classes == 3
    np.testing.assert_array_equal(store.test.embeddings, [[0, 0, 1]])
    with pytest.raises(CCMAError, match="lacks the companion files split"):
        import_features(tmp_path, "ds", "c", tmp_path / "e.npy", labels=tmp_path / "l.npy")
    np.savez(tmp_path / "e.npz", embeddings=np.eye(3), labels=np.arange(3), split=np.array(["train"] * 3))
    with pytest.raises(CCMAError, match="--labels and --split go with a bare .npy matrix only"):
        import_features(tmp_path, "ds", "c", tmp_path / "e.npz", labels=tmp_path / "l.npy")


def test_prototypes_must_match_the_teacher_store(files):
    d, *_ = files
    import_features(d / "data", "mine", "t", d / "teacher.npz", normalize=True)
    wrong_k = _npz(d / "k.npz", prototypes=np.eye(D_T)[:2], classnames=np.array(["cat", "dog"]))
    with pytest.raises(CCMAError, match="2 prototypes and 2 class names, but the feature store .* K=3"):
        import_prototypes(d / "data", "mine", "t", wrong_k)
    wrong_d = _npz(d / "d.npz", prototypes=np.eye(4)[:3], classnames=np.array(["cat", "dog", "owl"]))
    with pytest.raises(CCMAError, match="dimension 4 but the feature store"):
        import_prototypes(d / "data", "mine", "t", wrong_d)
    order = _npz(d / "o.npz", prototypes=np.eye(D_T)[:3], classnames=np.array(["dog", "cat", "owl"]))
    with pytest.raises(CCMAError, match="class names differ"):
        import_prototypes(d / "data", "mine", "t", order)
    with pytest.raises(CCMAError, match="no class names"):
        import_prototypes(d / "data", "mine", "t", _npz(d / "n.npz", prototypes=np.eye(D_T)[:3]))
    with pytest.raises(CCMAError, match="does not exist"):
        import_prototypes(d / "data", "mine", "other", d / "protos.npz")
