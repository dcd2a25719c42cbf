"""Split-conformal set predictors.

Nonconformity of label y for x: ``1 - p(y|x)`` (``paper``) or ``-log p(y|x)``
(``reference-code``). Prediction set C(x) = {y : s(x, y) <= q}; labels are never force-added.

Both scores are decreasing functions of log p, and sets and thresholds depend only on the
order of the scores, so every rank and every membership test here is computed on -log p.
Computing 1 - p itself would be wrong: it rounds to exactly 1.0 for every p < 1.1e-16, so
at tau = 0.01 most calibration scores tie at 1.0 and every label enters every set. The
threshold is converted into the chosen score's units only for reporting (``in_units``).
"""

from __future__ import annotations

import math

import numpy as np

NONCONFORMITY = ("one_minus_p", "neg_log_p")
# (n + 1)(1 - alpha) is often an integer that floating point lands just above.
RANK_SLACK = 1e-9


def order_scores(log_probs: np.ndarray) -> np.ndarray:
    """-log p (N, K) float64: the order every nonconformity choice shares (+inf where p = 0)."""
    return -np.asarray(log_probs, dtype=np.float64)


def in_units(threshold: float, kind: str = "one_minus_p") -> float:
    """A threshold on -log p expressed in the units of nonconformity ``kind``."""
    if kind == "one_minus_p":
        return -math.expm1(-threshold)  # 1 - exp(-t); 1.0 for t = inf
    if kind == "neg_log_p":
        return float(threshold)
    raise ValueError(f"unknown nonconformity {kind!r}; choose from {NONCONFORMITY}")


def calibrate_size(log_probs: np.ndarray, target_size: float) -> float:
    """Smallest threshold t on -log p with mean_x |{y : -log p(y|x) <= t}| >= target_size.

    log_probs: (n, K). The mean set size at t is (number of scores <= t) / n, a step function
    of t that jumps only at score values, so the answer is the ceil(target * n)-th smallest
    score: the same value bisection over the sorted scores converges to, found in O(nK).
    """
    n, k = log_probs.shape
    if not 0 < target_size <= k:
        raise ValueError(f"target set size must be in (0, {k}], got {target_size}")
    rank = math.ceil(target_size * n - RANK_SLACK)  # 1-based
    flat = order_scores(log_probs).ravel()
    return float(np.partition(flat, rank - 1)[rank - 1])


def calibrate_coverage(true_log_probs: np.ndarray, alpha: float) -> float:
    """t = the ceil((n + 1)(1 - alpha))-th smallest of -log p(y_i|x_i); +inf if that rank > n.

    true_log_probs: (n,) log-probabilities of the true labels. Gives marginal coverage
    >= 1 - alpha.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = len(true_log_probs)
    rank = math.ceil((n + 1) * (1 - alpha) - RANK_SLACK)
    if rank > n:
        return math.inf
    return float(np.partition(order_scores(true_log_probs), rank - 1)[rank - 1])


def prediction_sets(log_probs: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean membership (N, K): y in C(x) iff -log p(y|x) <= threshold. Sets may be empty."""
    return order_scores(log_probs) <= threshold


def set_size_and_coverage(sets: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Mean set size and empirical coverage of sets (N, K) against labels (N,)."""
    if len(labels) == 0:
        return float("nan"), float("nan")
    sizes = sets.sum(axis=1)
    covered = sets[np.arange(len(labels)), labels]
    return float(sizes.mean()), float(covered.mean())
