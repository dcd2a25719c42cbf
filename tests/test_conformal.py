"""Split-conformal calibration (docs/method.md §4) against brute force and the coverage theorem."""

import math

import numpy as np
import pytest
from scipy.special import log_softmax

from ccma.conformal import (calibrate_coverage, calibrate_size, in_units, prediction_sets,
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
        scores = -np.log(probs)
        q = calibrate_size(np.log(probs), target)
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
        with np.errstate(divide="ignore"):
            log_probs = np.log(probs)
        for target in (1, 2, 3.5):
            q = calibrate_size(log_probs, target)
            assert q == brute_force_size_threshold(-log_probs, target)


def test_size_target_out_of_range():
    with pytest.raises(ValueError, match="target set size"):
        calibrate_size(np.zeros((4, 3)), 4)


@pytest.mark.parametrize("n,alpha", [(19, 0.1), (99, 0.1), (50, 0.2), (10, 0.05)])
def test_coverage_threshold_is_the_order_statistic(n, alpha):
    rng = np.random.default_rng(n)
    s = rng.random(n)
    rank = math.ceil((n + 1) * (1 - alpha))
    expected = math.inf if rank > n else np.sort(s)[rank - 1]
    assert calibrate_coverage(-s, alpha) == expected


def test_coverage_threshold_rank_beyond_n_admits_everything():
    t = calibrate_coverage(np.log([0.2, 0.3]), 0.1)
    assert t == math.inf
    assert in_units(t, "one_minus_p") == 1.0 and in_units(t, "neg_log_p") == math.inf
    assert prediction_sets(np.array([[np.log(0.5), np.log(0.5), -np.inf]]), t).all()


def test_integer_rank_is_not_pushed_up_by_rounding():
    # (99 + 1) * 0.9 = 90.00000000000001 in floating point; the rank is 90.
    s = np.arange(99, dtype=float)
    assert calibrate_coverage(-s, 0.1) == 89.0


def test_coverage_rank_uses_n_plus_one():
    # n = 25, alpha = 0.1: ceil(26 * 0.9) = 24 but ceil(25 * 0.9) = 23.
    scores = np.arange(1.0, 26.0)
    assert calibrate_coverage(-scores, 0.1) == 24.0


@pytest.mark.parametrize("n_cal,alpha", [(25, 0.1), (38, 0.2)])
def test_marginal_coverage_over_exchangeable_trials(n_cal, alpha):
    """With continuous scores, split-conformal coverage is exactly rank / (n + 1), rank =
    ceil((n + 1)(1 - alpha)). The chosen n separate that rank from ceil(n (1 - alpha)) and
    from rank - 1 (both 1 / (n + 1) lower) by more than 8 standard errors of the estimate."""
    rng = np.random.default_rng(7)
    n_test, k, trials = 40, 6, 3000
    rank = math.ceil((n_cal + 1) * (1 - alpha))
    assert rank == math.ceil(n_cal * (1 - alpha)) + 1
    coverages = np.empty(trials)
    for trial in range(trials):
        log_probs = log_softmax(rng.normal(size=(n_cal + n_test, k)) * 2, axis=1)
        labels = (rng.random((n_cal + n_test, 1)) > np.cumsum(np.exp(log_probs), 1)).sum(1)
        labels = np.minimum(labels, k - 1)  # exchangeable draws from each row's posterior
        t = calibrate_coverage(log_probs[np.arange(n_cal), labels[:n_cal]], alpha)
        coverages[trial] = set_size_and_coverage(prediction_sets(log_probs[n_cal:], t),
                                                 labels[n_cal:])[1]
    se = coverages.std(ddof=1) / math.sqrt(trials)
    gap = 1 / (n_cal + 1)
    assert 8 * se < gap
    assert abs(coverages.mean() - rank / (n_cal + 1)) < 4 * se


@pytest.mark.parametrize("kind", ["one_minus_p", "neg_log_p"])
def test_underflowing_probabilities_keep_the_target_size(kind):
    # 1 - exp(-40) rounds to exactly 1.0: in 1 - p units the last three labels tie, and a
    # threshold computed there would admit all four.
    log_probs = np.tile([0.0, -40.0, -41.0, -50.0], (5, 1))
    t = calibrate_size(log_probs, 3)
    sets = prediction_sets(log_probs, t)
    assert sets.sum(axis=1).tolist() == [3] * 5
    assert sets[0].tolist() == [True, True, True, False]
    assert in_units(t, kind) == {"one_minus_p": -math.expm1(-41.0), "neg_log_p": 41.0}[kind]


def test_sets_are_never_force_filled():
    log_probs = np.log(np.array([[0.1, 0.2], [0.9, 0.05]]))
    sets = prediction_sets(log_probs, -math.log(0.5))
    assert sets.tolist() == [[False, False], [True, False]]
    size, cov = set_size_and_coverage(sets, np.array([0, 0]))
    assert size == 0.5 and cov == 0.5


def test_units_are_monotone_conversions_of_the_log_threshold():
    rng = np.random.default_rng(1)
    log_probs = np.log(rng.dirichlet(np.ones(7), size=40))
    t = calibrate_size(log_probs, 3)
    one_minus_p = 1.0 - np.exp(log_probs)
    # where 1 - p does not round, the sets in either unit are the log-space sets
    assert np.array_equal(one_minus_p <= in_units(t, "one_minus_p") + 1e-15,
                          prediction_sets(log_probs, t))
    assert np.array_equal(-log_probs <= in_units(t, "neg_log_p"), prediction_sets(log_probs, t))
    with pytest.raises(ValueError, match="unknown nonconformity"):
        in_units(t, "one_minus_log")
