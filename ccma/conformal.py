"""Split-conformal set predictors (SPEC section 4).

Nonconformity of label y for x: ``1 - p(y|x)`` (``paper``) or ``-log p(y|x)``
(``reference-code``). Prediction set C(x) = {y : s(x, y) <= q}; labels are never force-added.
"""

from __future__ import annotations

import math

import numpy as np

NONCONFORMITY = ("one_minus_p", "neg_log_p")
# (n + 1)(1 - alpha) is often an integer that floating point lands just above.
RANK_SLACK = 1e-9


def nonconformity(log_probs: np.ndarray, kind: str = "one_minus_p") -> np.ndarray:
    """Scores s(x, y) from log-probabilities (N, K); returns (N, K) float64."""
    if kind == "one_minus_p":
        return 1.0 - np.exp(log_probs)
    if kind == "neg_log_p":
        return -np.asarray(log_probs, dtype=np.float64)
    raise ValueError(f"unknown nonconformity {kind!r}; choose from {NONCONFORMITY}")


def max_score(kind: str) -> float:
    """The largest value a score can take: a threshold that admits every label."""
    return 1.0 if kind == "one_minus_p" else math.inf


def calibrate_size(scores: np.ndarray, target_size: float) -> float:
    """Smallest q with mean_x |{y : s(x, y) <= q}| >= target_size.

    scores: (n, K). The mean set size at q is (number of scores <= q) / n, a step function
    of q that jumps only at score values, so the answer is the ceil(target * n)-th smallest
    score: the same value bisection over the sorted scores converges to, found in O(nK).
    """
    n, k = scores.shape
    if not 0 < target_size <= k:
        raise ValueError(f"target set size must be in (0, {k}], got {target_size}")
    rank = math.ceil(target_size * n - RANK_SLACK)  # 1-based
    flat = np.asarray(scores, dtype=np.float64).ravel()
    return float(np.partition(flat, rank - 1)[rank - 1])


def calibrate_coverage(true_scores: np.ndarray, alpha: float, kind: str = "one_minus_p") -> float:
    """q = the ceil((n + 1)(1 - alpha))-th smallest of s(x_i, y_i); the maximum if that rank > n.

    true_scores: (n,) scores of the true labels. Gives marginal coverage >= 1 - alpha.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = len(true_scores)
    rank = math.ceil((n + 1) * (1 - alpha) - RANK_SLACK)
    if rank > n:
        return max_score(kind)
    return float(np.partition(np.asarray(true_scores, dtype=np.float64), rank - 1)[rank - 1])


def prediction_sets(scores: np.ndarray, q: float) -> np.ndarray:
    """Boolean membership (N, K): y in C(x) iff s(x, y) <= q. Sets may be empty."""
    return scores <= q


def set_size_and_coverage(sets: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean set size and empirical coverage of sets (N, K) against labels (N,)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    sizes = sets.sum(axis=1)
    covered = sets[np.arange(len(labels)), labels]
    return float(sizes.mean()), float(covered.mean())
