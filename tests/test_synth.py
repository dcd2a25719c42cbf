"""The synthetic cross-modal benchmark (docs/method.md §11)."""

import numpy as np
import pytest

from ccma.cli import main
from ccma.features import feature_path, prototype_path, read_features, read_prototypes
from ccma.synth import REGIMES, config_for, generate

SMALL = dict(n_classes=12, n_train=1200, n_test=600, teacher_dim=32, student_dim=40)


def test_deterministic_in_seed():
    a = generate(config_for("mismatch", **SMALL, seed=3))
    b = generate(config_for("mismatch", **SMALL, seed=3))
    c = generate(config_for("mismatch", **SMALL, seed=4))
    assert np.array_equal(a.teacher_train, b.teacher_train) and np.array_equal(a.student_test, b.student_test)
    assert not np.array_equal(a.teacher_train, c.teacher_train)


@pytest.mark.parametrize("target", [0.5, 0.7, 0.9])
def test_teacher_accuracy_knob(target):
    d = generate(config_for("mismatch", **SMALL, teacher_accuracy=target))
    assert abs(d.zero_shot_test - target) < 0.05
    pred = np.argmax(d.teacher_test @ d.prototypes.T, axis=1)
    assert d.zero_shot_test == np.mean(pred == d.test_labels)


def test_rows_normalised_and_balanced():
    d = generate(config_for("aligned", **SMALL))
    for x in (d.teacher_train, d.student_train, d.prototypes):
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    assert np.bincount(d.train_labels).min() >= 1200 // 12 - 12


def _confusion_groups_agree(d):
    """Fraction of class pairs that share a confusable group in both spaces, among pairs
    that share one in the teacher's."""
    same_t = d.teacher_groups[:, None] == d.teacher_groups[None, :]
    same_s = d.student_groups[:, None] == d.student_groups[None, :]
    off = ~np.eye(len(same_t), dtype=bool)
    return (same_t & same_s & off).sum() / (same_t & off).sum()


def test_regimes_differ_in_confusions_and_teacher_quality():
    mm = generate(config_for("mismatch", **SMALL))
    al = generate(config_for("aligned", **SMALL))
    assert _confusion_groups_agree(al) == 1.0
    assert _confusion_groups_agree(mm) < 0.6
    assert al.zero_shot_test > 0.93 and 0.6 < mm.zero_shot_test < 0.8
    assert REGIMES["aligned"]["confusion_mismatch"] == 0.0


def test_student_confusions_follow_its_own_groups():
    """The student's nearest wrong class mean is mostly inside its own group, so confusions
    differ from the teacher's when the groups do."""
    d = generate(config_for("mismatch", **SMALL))
    means = np.stack([d.student_train[d.train_labels == c].mean(0) for c in range(12)])
    sim = means @ means.T
    np.fill_diagonal(sim, -np.inf)
    nearest = sim.argmax(1)
    assert np.mean(d.student_groups[nearest] == d.student_groups) > 0.8


def test_cli_writes_stores_a_real_dataset_gets(tmp_path, capsys):
    assert main(["synth", "--data-dir", str(tmp_path), "--dataset", "s", "--regime", "aligned",
                 "--n-classes", "5", "--n-train", "200", "--n-test", "50", "--teacher-dim", "8",
                 "--student-dim", "12"]) == 0
    t = read_features(feature_path(tmp_path, "s", "clip-vit-l-14"))
    s = read_features(feature_path(tmp_path, "s", "dinov2-large"))
    p = read_prototypes(prototype_path(tmp_path, "s", "clip-vit-l-14"))
    assert t.dim == 8 and s.dim == 12 and len(p.classnames) == 5
    assert np.array_equal(t.train.labels, s.train.labels)
    assert t.attrs["regime"] == "aligned" and 0 <= t.attrs["teacher_zero_shot_accuracy"] <= 1
    assert "teacher zero-shot accuracy" in capsys.readouterr().out


def test_cifar100_scale_shape():
    cfg = config_for("mismatch", "cifar100")
    assert (cfg.n_classes, cfg.n_train, cfg.n_test, cfg.teacher_dim, cfg.student_dim) == (100, 50_000, 10_000, 768, 1024)
