"""Split-conformal calibration (SPEC section 4) against brute force and the coverage theorem."""

import math

import numpy as np
import pytest

from ccma.conformal import (calibrate_coverage, calibrate_size, nonconformity, prediction_sets,
                            set_size_and_coverage)


def brute_force_size_threshold(scores, target):
    """Smallest candidate threshold (a score value) whose mean set size reaches target."""
    for q in np.unique(scores):
        if (scores <= q).sum(axis=1).mean() >= target:
            return q
    raise AssertionError("unreachable target")


@pytest.mark.parametrize("target", [1, 2.5, 3, 5, 7.2])
def test_size_targeted_is_smallest_threshold_reaching_target(target):
    rng = np.random.default_rng(int(target * 10))
    for trial in range(20):
        probs = rng.dirichlet(np.full(10, 0.3), size=37)
        scores = nonconformity(np.log(probs))
        q = calibrate_size(scores, target)
        assert q == brute_force_size_threshold(scores, target)
        assert (scores <= q).sum(axis=1).mean() >= target
        below = scores[scores < q]
        if below.size:  # any smaller candidate falls short
            assert (scores <= below.max()).sum(axis=1).mean() < target


def test_size_targeted_with_ties():
    # Quantised posteriors: many identical scores, so thresholds jump by several labels.
    rng = np.random.default_rng(3)
    for _ in range(30):
        probs = np.round(rng.dirichlet(np.ones(6), size=20) * 4) / 4
        scores = 1.0 - probs
        for target in (1, 2, 3.5):
            q = calibrate_size(scores, target)
            assert q == brute_force_size_threshold(scores, target)


def test_size_target_out_of_range():
    with pytest.raises(ValueError, match="target set size"):
        calibrate_size(np.zeros((4, 3)), 4)


@pytest.mark.parametrize("n,alpha", [(19, 0.1), (99, 0.1), (50, 0.2), (10, 0.05)])
def test_coverage_threshold_is_the_order_statistic(n, alpha):
    rng = np.random.default_rng(n)
    s = rng.random(n)
    rank = math.ceil((n + 1) * (1 - alpha))
    expected = 1.0 if rank > n else np.sort(s)[rank - 1]
    assert calibrate_coverage(s, alpha) == expected


def test_coverage_threshold_rank_beyond_n_admits_everything():
    assert calibrate_coverage(np.array([0.2, 0.3]), 0.1) == 1.0
    assert calibrate_coverage(np.array([0.2, 0.3]), 0.1, kind="neg_log_p") == math.inf


def test_integer_rank_is_not_pushed_up_by_rounding():
    # (99 + 1) * 0.9 = 90.00000000000001 in floating point; the rank is 90.
    s = np.arange(99, dtype=float)
    assert calibrate_coverage(s, 0.1) == 89.0


def test_marginal_coverage_over_exchangeable_trials():
    rng = np.random.default_rng(7)
    alpha, n_cal, n_test, k = 0.1, 100, 500, 8
    coverages = []
    for _ in range(200):
        logits = rng.normal(size=(n_cal + n_test, k)) * 2
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        labels = np.array([rng.choice(k, p=p) for p in probs])  # exchangeable draws
        scores = nonconformity(np.log(probs))
        q = calibrate_coverage(scores[np.arange(n_cal), labels[:n_cal]], alpha)
        sets = prediction_sets(scores[n_cal:], q)
        coverages.append(set_size_and_coverage(sets, labels[n_cal:])[1])
    assert np.mean(coverages) >= 1 - alpha - 0.01


def test_sets_are_never_force_filled():
    scores = np.array([[0.9, 0.8], [0.1, 0.95]])
    sets = prediction_sets(scores, 0.5)
    assert sets.tolist() == [[False, False], [True, False]]
    size, cov = set_size_and_coverage(sets, np.array([0, 0]))
    assert size == 0.5 and cov == 0.5


def test_neg_log_p_gives_same_sets_under_size_targeting():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(7), size=40)
    a = nonconformity(np.log(probs), "one_minus_p")
    b = nonconformity(np.log(probs), "neg_log_p")
    sets_a = prediction_sets(a, calibrate_size(a, 3))
    sets_b = prediction_sets(b, calibrate_size(b, 3))
    assert np.array_equal(sets_a, sets_b)
