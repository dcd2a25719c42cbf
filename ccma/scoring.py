"""The cross-modal disagreement score u(x) and its per-round diagnostics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from .settings import SCORES  # declared without scipy, for the command line

GATE_EPS = 1e-8
LOG2 = np.log(2.0)


@dataclass
class Scores:
    """Per-sample arrays, each (N,)."""

    u: np.ndarray            # the CCMA score
    js: np.ndarray           # Jensen-Shannon divergence on the renormalised union support
    gate: np.ndarray         # w = c_T / (c_T + c_S + eps)
    conf_teacher: np.ndarray
    conf_student: np.ndarray
    entropy_student: np.ndarray
    overlap: np.ndarray      # |C_T ∩ C_S| / |C_T ∪ C_S| (0 when both sets are empty)
    overlap_count: np.ndarray  # |C_T ∩ C_S| (the published code's overlap)
    sym_diff: np.ndarray     # |C_T Δ C_S|
    top1_disagree: np.ndarray

    def summary(self) -> dict:
        """Means over the scored subpool."""
        return {
            "overlap": float(self.overlap.mean()), "overlap_count": float(self.overlap_count.mean()),
            "sym_diff": float(self.sym_diff.mean()),
            "top1_disagreement": float(self.top1_disagree.mean()), "js_mean": float(self.js.mean()),
            "entropy_mean": float(self.entropy_student.mean()),
            "conf_teacher": float(self.conf_teacher.mean()),
            "conf_student": float(self.conf_student.mean()), "gate_mean": float(self.gate.mean()),
        }


def entropy(log_probs: np.ndarray) -> np.ndarray:
    """H(p) = -sum p log p (natural log) from log-probabilities (N, K); 0 log 0 = 0."""
    p = np.exp(log_probs)
    with np.errstate(invalid="ignore"):
        return -np.sum(np.where(p > 0, p * log_probs, 0.0), axis=1)


def _renormalise(log_probs: np.ndarray, support: np.ndarray) -> np.ndarray:
    """log p~(y) on the support (N, K) bool; -inf outside it. Done in log space because a
    tau = 0.01 teacher puts mass below float range on labels the student may still hold."""
    masked = np.where(support, log_probs, -np.inf)
    return masked - logsumexp(masked, axis=1, keepdims=True)


def js_divergence(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    """JS(p, q) in nats for log-distributions (N, K) with -inf allowed."""
    log_m = np.logaddexp(log_p, log_q) - LOG2

    def kl(log_a):
        a = np.exp(log_a)
        with np.errstate(invalid="ignore"):  # 0 * (-inf) outside the support, masked out
            return np.sum(np.where(a > 0, a * (log_a - log_m), 0.0), axis=1)

    return np.maximum(0.5 * kl(log_p) + 0.5 * kl(log_q), 0.0)




def combine(js: np.ndarray, h_s: np.ndarray, gate: np.ndarray, score: str = "gated") -> np.ndarray:
    """u(x) from its terms, each (N,): ``gated`` w JS + (1 - w) H(p_S) (the paper),
    ``entropy`` H(p_S) alone, ``js`` JS alone (the last two isolate the teacher's part)."""
    if score == "gated":
        return gate * js + (1.0 - gate) * h_s
    if score == "entropy":
        return h_s
    if score == "js":
        return js
    raise ValueError(f"unknown score {score!r}; choose from {SCORES}")


def ccma_scores(log_p_teacher: np.ndarray, log_p_student: np.ndarray,
                sets_teacher: np.ndarray, sets_student: np.ndarray, score: str = "gated") -> Scores:
    """u(x) (``combine``) from JS(p~_T, p~_S) on the union support U = C_T ∪ C_S, H(p_S) and
    the gate w = c_T / (c_T + c_S + eps).

    log_p_*: (N, K) log-posteriors; sets_*: (N, K) bool conformal sets. An empty union
    falls back to {argmax p_T, argmax p_S}.
    """
    n = log_p_teacher.shape[0]
    rows = np.arange(n)
    top_t = log_p_teacher.argmax(axis=1)
    top_s = log_p_student.argmax(axis=1)
    union = sets_teacher | sets_student
    empty = ~union.any(axis=1)
    if empty.any():
        union = union.copy()
        union[rows[empty], top_t[empty]] = True
        union[rows[empty], top_s[empty]] = True
    js = js_divergence(_renormalise(log_p_teacher, union), _renormalise(log_p_student, union))
    conf_t = np.exp(log_p_teacher[rows, top_t])
    conf_s = np.exp(log_p_student[rows, top_s])
    gate = conf_t / (conf_t + conf_s + GATE_EPS)
    h_s = entropy(log_p_student)
    inter = (sets_teacher & sets_student).sum(axis=1)
    union_size = (sets_teacher | sets_student).sum(axis=1)
    return Scores(
        u=combine(js, h_s, gate, score), js=js, gate=gate, conf_teacher=conf_t,
        conf_student=conf_s, entropy_student=h_s,
        overlap=inter / np.maximum(union_size, 1), overlap_count=inter.astype(np.float64),
        sym_diff=(sets_teacher ^ sets_student).sum(axis=1).astype(np.float64),
        top1_disagree=(top_t != top_s).astype(np.float64),
    )
