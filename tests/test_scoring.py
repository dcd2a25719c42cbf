"""The CCMA score (docs/method.md §5) on small hand-computed cases."""

import numpy as np
import pytest

from ccma.scoring import GATE_EPS, ccma_scores, entropy


def logp(rows):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(rows, dtype=float))


def H(p):
    p = np.asarray(p, float)
    p = p[p > 0]
    return -(p * np.log(p)).sum()


def test_identical_posteriors_have_zero_js():
    p = [[0.5, 0.3, 0.2]]
    sets = np.array([[True, True, False]])
    s = ccma_scores(logp(p), logp(p), sets, sets)
    assert s.js[0] == pytest.approx(0.0, abs=1e-12)
    w = 0.5 / (0.5 + 0.5 + GATE_EPS)
    assert s.gate[0] == pytest.approx(w)
    assert s.u[0] == pytest.approx((1 - w) * H(p[0]))
    assert s.overlap[0] == 1.0 and s.sym_diff[0] == 0 and s.top1_disagree[0] == 0


def test_disjoint_supports_give_log2():
    pt = [[0.9, 0.1, 0.0]]
    ps = [[0.0, 0.0, 1.0]]
    st = np.array([[True, False, False]])
    ss = np.array([[False, False, True]])
    s = ccma_scores(logp(pt), logp(ps), st, ss)
    # On U = {0, 2}: p~_T = (1, 0), p~_S = (0, 1): disjoint, JS = log 2.
    assert s.js[0] == pytest.approx(np.log(2))
    w = 0.9 / (0.9 + 1.0 + GATE_EPS)
    assert s.u[0] == pytest.approx(w * np.log(2) + (1 - w) * 0.0)
    assert s.overlap[0] == 0.0 and s.sym_diff[0] == 2 and s.top1_disagree[0] == 1


def test_hand_computed_union_renormalisation():
    pt = np.array([[0.6, 0.3, 0.1]])
    ps = np.array([[0.2, 0.2, 0.6]])
    st = np.array([[True, False, False]])
    ss = np.array([[False, True, True]])
    s = ccma_scores(logp(pt), logp(ps), st, ss)  # U = all three labels
    m = (pt[0] + ps[0]) / 2
    js = 0.5 * np.sum(pt[0] * np.log(pt[0] / m)) + 0.5 * np.sum(ps[0] * np.log(ps[0] / m))
    assert s.js[0] == pytest.approx(js)
    w = 0.6 / (0.6 + 0.6 + GATE_EPS)
    assert s.u[0] == pytest.approx(w * js + (1 - w) * H(ps[0]))
    assert s.sym_diff[0] == 3 and s.overlap[0] == 0


def test_empty_union_falls_back_to_both_argmaxes():
    pt = np.array([[0.7, 0.2, 0.1]])
    ps = np.array([[0.1, 0.3, 0.6]])
    empty = np.zeros((1, 3), bool)
    s = ccma_scores(logp(pt), logp(ps), empty, empty)
    a = pt[0, [0, 2]] / pt[0, [0, 2]].sum()
    b = ps[0, [0, 2]] / ps[0, [0, 2]].sum()
    m = (a + b) / 2
    js = 0.5 * np.sum(a * np.log(a / m)) + 0.5 * np.sum(b * np.log(b / m))
    assert s.js[0] == pytest.approx(js)
    assert s.overlap[0] == 0.0 and s.sym_diff[0] == 0


def test_gate_extremes():
    sets = np.ones((2, 2), bool)
    # Row 0: a sure teacher against a flat student -> w near 2/3; row 1 the reverse.
    pt = np.array([[1.0, 0.0], [0.5, 0.5]])
    ps = np.array([[0.5, 0.5], [1.0, 0.0]])
    s = ccma_scores(logp(pt), logp(ps), sets, sets)
    assert s.gate[0] == pytest.approx(1 / 1.5)
    assert s.gate[1] == pytest.approx(0.5 / 1.5)
    # w -> 1 when the student's confidence vanishes relative to the teacher's: u -> JS.
    k = 1000
    ps_flat = np.full((1, k), 1.0 / k)
    pt_sure = np.zeros((1, k))
    pt_sure[0, 0] = 1.0
    full = np.ones((1, k), bool)
    s = ccma_scores(logp(pt_sure), np.log(ps_flat), full, full)
    assert s.gate[0] == pytest.approx(1 / (1 + 1 / k))
    assert s.u[0] == pytest.approx(s.gate[0] * s.js[0] + (1 - s.gate[0]) * np.log(k))
    # Both confidences zero is impossible for distributions; eps keeps w finite anyway.
    assert np.isfinite(s.u).all()


def test_entropy_handles_zero_probabilities():
    assert entropy(logp([[1.0, 0.0, 0.0]]))[0] == 0.0
    assert entropy(logp([[0.5, 0.5]]))[0] == pytest.approx(np.log(2))


def test_tiny_teacher_tail_does_not_underflow():
    # tau = 0.01 logits differing by 9 give p ~ e^-900: zero in float64 probability, finite in log.
    log_pt = np.array([[0.0, -900.0]])
    log_pt = log_pt - np.logaddexp.reduce(log_pt, axis=1, keepdims=True)
    log_ps = np.log(np.array([[0.4, 0.6]]))
    sets = np.array([[False, True]])
    s = ccma_scores(log_pt, log_ps, sets, sets)  # U = {1}: both renormalise to (0, 1)
    assert s.js[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isfinite(s.u).all()


def test_score_choices_isolate_each_term():
    pt = np.array([[0.6, 0.3, 0.1], [0.05, 0.05, 0.9]])
    ps = np.array([[0.2, 0.2, 0.6], [0.1, 0.8, 0.1]])
    st = np.array([[True, True, False], [False, True, True]])
    ss = np.array([[True, False, True], [False, True, False]])
    gated = ccma_scores(logp(pt), logp(ps), st, ss)
    only_h = ccma_scores(logp(pt), logp(ps), st, ss, score="entropy")
    only_js = ccma_scores(logp(pt), logp(ps), st, ss, score="js")
    assert np.allclose(only_h.u, [H(ps[0]), H(ps[1])])
    assert np.array_equal(only_js.u, gated.js)
    assert np.allclose(gated.u, gated.gate * gated.js + (1 - gated.gate) * only_h.u)
    # |C_T ∩ C_S| as a count beside the ratio: {0} of {0, 1, 2}; {1} of {1, 2}
    assert gated.overlap_count.tolist() == [1.0, 1.0]
    assert gated.overlap.tolist() == [1 / 3, 1 / 2]
    summary = gated.summary()
    assert summary["overlap_count"] == 1.0 and summary["entropy_mean"] == pytest.approx(np.mean(only_h.u))
    with pytest.raises(ValueError, match="unknown score"):
        ccma_scores(logp(pt), logp(ps), st, ss, score="gate")
