"""Conformance with peer libraries (test-only dependencies): least confidence, entropy,
margins and core-set select the same batch as scikit-activeml given the same probabilities,
embeddings and labelled set; BALD scores equal baal's on the same Monte-Carlo samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER, load_run_data
from ccma.strategies import REGISTRY, QueryContext
from ccma.strategies.bald import bald_scores
from ccma.student import StudentConfig, train_student

skactiveml = pytest.importorskip("skactiveml")
baal_heuristics = pytest.importorskip("baal.active.heuristics")

from skactiveml.classifier import SklearnClassifier  # noqa: E402
from skactiveml.pool import CoreSet, UncertaintySampling  # noqa: E402

BUDGET = 15


@pytest.fixture(scope="module")
def trained(synth_dir):
    pool = load_run_data(synth_dir, "syn", DEFAULT_TEACHER, DEFAULT_STUDENT).pool
    labeled = np.random.default_rng(7).choice(len(pool.labels), 40, replace=False)
    student = train_student(pool.student[labeled], pool.labels[labeled], pool.n_classes,
                            StudentConfig(max_epochs=80, patience=5, device="cpu"), seed=2)
    return pool, labeled, student


def ours(name: str, pool, labeled, student) -> np.ndarray:
    ctx = QueryContext(data=pool, labeled=labeled, student=student, params=REGISTRY[name].effective({}),
                       seed=1, round=1, device=torch.device("cpu"))
    return REGISTRY[name].query(ctx, BUDGET, np.random.default_rng(0)).indices


def partially_labelled(pool, labeled) -> np.ndarray:
    y = np.full(len(pool.labels), np.nan)
    y[labeled] = pool.labels[labeled]
    return y


class StudentPosterior(ClassifierMixin, BaseEstimator):
    """scikit-learn face of the trained student: predict_proba = p_S(y|x) (float64)."""

    def __init__(self, student=None, n_classes: int = 2):
        self.student = student
        self.n_classes = n_classes

    def fit(self, X, y):
        self.classes_ = np.arange(self.n_classes)
        return self

    def predict_proba(self, X):
        return np.exp(self.student.log_proba(np.asarray(X, dtype=np.float32)))


@pytest.mark.parametrize("name, method", [("uncertainty", "least_confident"),
                                          ("entropy", "entropy"),
                                          ("margins", "margin_sampling")])
def test_uncertainty_family_matches_scikit_activeml(trained, name, method):
    pool, labeled, student = trained
    y = partially_labelled(pool, labeled)
    classes = np.arange(pool.n_classes)
    clf = SklearnClassifier(StudentPosterior(student, pool.n_classes), classes=classes).fit(pool.student, y)
    theirs = UncertaintySampling(method=method, random_state=0).query(
        pool.student, y, clf, fit_clf=False, batch_size=BUDGET)
    mine = ours(name, pool, labeled, student)
    # tie-free: the batch boundary is not a tie
    probs = clf.predict_proba(pool.student[np.flatnonzero(np.isnan(y))])
    assert len(np.unique(probs.max(1))) == len(probs)
    assert set(mine.tolist()) == set(theirs.tolist())


def test_coreset_matches_scikit_activeml(trained):
    pool, labeled, student = trained
    embeddings = student.embed(pool.student)
    theirs = CoreSet(random_state=0).query(embeddings.astype(np.float64),
                                           partially_labelled(pool, labeled), batch_size=BUDGET)
    mine = ours("coreset", pool, labeled, student)
    assert mine.tolist() == theirs.tolist()      # same points, in the same greedy order


def test_bald_scores_match_baal(trained):
    pool, _, student = trained
    mc = student.mc_proba(pool.student[:300], passes=20, seed=123)          # (R, n, K)
    theirs = baal_heuristics.BALD().compute_score(np.transpose(mc, (1, 2, 0)))  # (n, K, R)
    mine = bald_scores(mc)
    assert mine.max() > 1e-3
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
