"""Learning-curve metrics on hand-made curves (docs/method.md §9)."""

import numpy as np
import pytest

from ccma import metrics


def test_aulc_is_the_trapezoid_over_rounds_divided_by_t_minus_one():
    # (0.2 + 0.4) / 2 + (0.4 + 0.9) / 2 = 0.95 over T - 1 = 2 rounds
    assert metrics.aulc([0.2, 0.4, 0.9]) == pytest.approx(0.475)
    # A flat curve's AULC is its accuracy; a perfect one is 1.
    assert metrics.aulc([0.7] * 20) == pytest.approx(0.7)
    assert metrics.aulc(np.ones(5)) == pytest.approx(1.0)
    # Leading axes are batches (seeds): one AULC each.
    batch = np.array([[0.0, 1.0], [0.5, 0.5], [0.2, 0.4]])
    np.testing.assert_allclose(metrics.aulc(batch), [0.5, 0.5, 0.3])
    # One round has no area: its accuracy.
    assert metrics.aulc([0.42]) == pytest.approx(0.42)
    with pytest.raises(ValueError):
        metrics.aulc(np.zeros(0))


def test_final_at_r_is_the_last_round():
    assert metrics.final_at_r([0.1, 0.5, 0.3]) == pytest.approx(0.3)
    np.testing.assert_allclose(metrics.final_at_r([[0.1, 0.2], [0.3, 0.4]]), [0.2, 0.4])


def test_labels_to_target_first_crossing_and_not_reached():
    acc = [0.50, 0.79, 0.86, 0.84, 0.91]
    n = [10, 20, 30, 40, 50]
    got = metrics.labels_to_target(acc, n, [0.80, 0.85, 0.90, 0.95])
    # 80 % and 85 % first reached at 30 labels (the dip at 40 does not matter), 90 % at 50,
    # 95 % never: "not reached" is NaN.
    np.testing.assert_array_equal(got[:3], [30, 30, 50])
    assert np.isnan(got[3])


def test_labels_to_target_counts_a_seed_mean_equal_to_the_target():
    # The mean of three seeds at 75 %, 83 % and 82 % is 0.7999999999999999 in floating
    # point; it equals 80 %.
    mean = np.mean([[0.5, 0.75], [0.5, 0.83], [0.5, 0.82]], axis=0)
    assert mean[1] < 0.8
    assert metrics.labels_to_target(mean, [5, 10], [0.8])[0] == 10
    # ...but a genuinely lower accuracy does not reach it.
    assert np.isnan(metrics.labels_to_target([0.5, 0.799], [5, 10], [0.8])[0])


def test_labels_to_target_ignores_missing_rounds():
    got = metrics.labels_to_target([0.3, np.nan, 0.85], [1, 2, 3], [0.8])
    assert got[0] == 3
    with pytest.raises(ValueError):
        metrics.labels_to_target([0.3, 0.4], [1, 2, 3], [0.8])


def test_ranks_highest_accuracy_first_with_ties():
    scores = np.array([
        [0.50, 0.70, 0.9],
        [0.50, 0.80, np.nan],   # this strategy has no third round: not ranked there
        [0.40, 0.70, 0.8],
    ])
    got = metrics.ranks(scores)  # competition ranking: 1, 1, 3
    expected = np.array([[1, 2, 1], [1, 1, np.nan], [3, 2, 2]], dtype=float)
    np.testing.assert_array_equal(got, expected)
    avg = metrics.ranks(scores, method="average")
    np.testing.assert_array_equal(avg[:, 0], [1.5, 1.5, 3])
    np.testing.assert_array_equal(avg[:, 1], [2.5, 1, 2.5])


def test_ranks_tie_seed_means_that_differ_by_rounding_only():
    a = (0.1 + 0.2) / 1.0          # 0.30000000000000004
    scores = np.array([[a], [0.3], [0.2]])
    np.testing.assert_array_equal(metrics.ranks(scores)[:, 0], [1, 1, 3])
    with pytest.raises(ValueError):
        metrics.ranks(scores, method="best")


def test_mean_std_over_seeds_ignores_missing_values():
    values = np.array([[0.1, 0.4, np.nan], [0.3, np.nan, np.nan], [0.5, np.nan, np.nan]])
    mean, std = metrics.mean_std(values)
    np.testing.assert_allclose(mean[:2], [0.3, 0.4])
    assert np.isnan(mean[2])
    assert std[0] == pytest.approx(np.std([0.1, 0.3, 0.5], ddof=1))
    assert np.isnan(std[1]) and np.isnan(std[2])  # one seed: no deviation


def test_per_second():
    np.testing.assert_allclose(metrics.per_second(0.859, 3.015), 0.859 / 3.015)
    got = metrics.per_second([0.8, 0.8, 0.8], [0.0, np.nan, 2.0])
    assert np.isnan(got[0]) and np.isnan(got[1]) and got[2] == pytest.approx(0.4)


def test_paired_difference_by_hand():
    # differences 0.1, 0.3, 0.2: mean 0.2, sd 0.1, t(0.975, 2) = 4.302652729911275
    mean, lo, hi = metrics.paired_difference([0.6, 0.8, 0.7], [0.5, 0.5, 0.5])
    half = 4.302652729911275 * 0.1 / np.sqrt(3)
    assert mean == pytest.approx(0.2)
    assert (lo, hi) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert np.isnan(metrics.paired_difference([1.0], [0.5])[1])
    with pytest.raises(ValueError):
        metrics.paired_difference([], [])
