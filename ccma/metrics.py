"""Learning-curve metrics (docs/method.md §9): pure functions over arrays.

A learning curve is the test accuracy at rounds t = 1..T (fractions in [0, 1]); round t has
``n_labeled[t]`` labels. Arrays may carry leading batch axes (seeds, strategies).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.integrate import trapezoid
from scipy.stats import rankdata
from scipy.stats import t as student_t

from .settings import TIE_METHODS  # declared without scipy, for the command line

# Accuracies are multiples of 1 / N_test; a seed mean can land a hair below a target it
# equals (0.1 + 0.7 != 0.8 in floating point). This slack absorbs only that rounding.
TARGET_SLACK = 1e-9
# Seed means of identical curves (every strategy shares round 1) must tie exactly.
RANK_DECIMALS = 12


def aulc(accuracy) -> np.ndarray:
    """Area under the learning curve: trapezoids over the round index, divided by T - 1.

    accuracy: (..., T) -> (...). With accuracies in [0, 1] the result is in [0, 1]; a
    one-round curve (T = 1) has no area and returns its single accuracy.
    """
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.shape[-1] == 0:
        raise ValueError("aulc: the curve has no rounds")
    if acc.shape[-1] == 1:
        return acc[..., 0]
    return trapezoid(acc, axis=-1) / (acc.shape[-1] - 1)


def final_at_r(accuracy) -> np.ndarray:
    """Final@R: the accuracy at the last round. (..., T) -> (...)."""
    acc = np.asarray(accuracy, dtype=np.float64)
    if acc.shape[-1] == 0:
        raise ValueError("final_at_r: the curve has no rounds")
    return acc[..., -1]


def labels_to_target(mean_accuracy, n_labeled, targets) -> np.ndarray:
    """Labels needed to reach each target on a (seed-mean) curve.

    mean_accuracy: (T,), n_labeled: (T,) increasing, targets: (m,) fractions.
    Returns (m,) float: the smallest n_labeled whose accuracy is >= the target, NaN where the
    curve never reaches it ("not reached"). Rounds whose accuracy is NaN never count.
    """
    acc = np.asarray(mean_accuracy, dtype=np.float64)
    n = np.asarray(n_labeled, dtype=np.float64)
    if acc.shape != n.shape or acc.ndim != 1:
        raise ValueError(f"labels_to_target: accuracy {acc.shape} and n_labeled {n.shape} "
                         "must be the same 1-d shape")
    out = np.full(len(np.atleast_1d(targets)), np.nan)
    for i, target in enumerate(np.atleast_1d(np.asarray(targets, dtype=np.float64))):
        reached = np.flatnonzero(acc >= target - TARGET_SLACK)  # NaN compares False
        if len(reached):
            out[i] = n[reached].min()
    return out


def ranks(scores, method: str = "min") -> np.ndarray:
    """Rank of each strategy in every round: 1 = highest score.

    scores: (S, T) (e.g. seed-mean accuracy of S strategies at T rounds) -> (S, T) float
    ranks; NaN where the score is NaN (a strategy without that round is not ranked there).
    Ties (equal to RANK_DECIMALS decimals) share a rank by ``method``, scipy's names:
    ``min`` gives 1, 1, 3 (competition ranking), ``average`` 1.5, 1.5, 3.
    """
    if method not in TIE_METHODS:
        raise ValueError(f"ranks: method must be one of {TIE_METHODS}, got {method!r}")
    s = np.round(np.asarray(scores, dtype=np.float64), RANK_DECIMALS)
    if s.ndim != 2:
        raise ValueError(f"ranks: scores must be (strategies, rounds), got shape {s.shape}")
    out = np.full(s.shape, np.nan)
    for t in range(s.shape[1]):
        ok = ~np.isnan(s[:, t])
        if ok.any():
            out[ok, t] = rankdata(-s[ok, t], method=method)
    return out


def mean_std(values, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and sample standard deviation (ddof = 1) over ``axis`` (the seeds).

    Where fewer than two values exist the deviation is NaN (undefined), not 0.
    """
    v = np.asarray(values, dtype=np.float64)
    with warnings.catch_warnings():  # all-NaN columns and single seeds are expected here
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(v, axis=axis), np.nanstd(v, axis=axis, ddof=1)


def per_second(value, seconds) -> np.ndarray:
    """``value / seconds`` (e.g. AULC per query second); NaN where seconds is not > 0."""
    v = np.asarray(value, dtype=np.float64)
    s = np.asarray(seconds, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(s > 0, v / np.where(s > 0, s, 1.0), np.nan)


def paired_difference(a, b, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of the per-seed differences a - b and its two-sided t confidence interval.

    a, b: (n_seeds,) values of two strategies on the same seeds (paired). Returns
    (mean, low, high); the interval is NaN with fewer than two seeds.
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if d.ndim != 1 or len(d) == 0:
        raise ValueError("paired_difference: expected two equal-length 1-d arrays of per-seed values")
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    half = float(student_t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half
