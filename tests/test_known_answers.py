"""Known-answer tests: each registered strategy called whole (``query(ctx, budget, rng)``) on
a tiny hand-built pool, its batch compared with a plain re-computation written here (loops
and numpy, none of the implementation's helpers), plus direct tests of core functions.

The pools are built so that every wiring choice changes the expected batch: the student's
adapter a(h) = (h - mean) / scale is far from the identity (so h and a(h) disagree), the
labelled set holds the point a strategy would otherwise take, and so on. Each test also
checks that the wrong wirings really give other answers (``assert_tells_apart``), so that
no test passes whatever the wiring.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from ccma.acquisition import kmeans_selection
from ccma.geometry import nearest_distinct
from ccma.strategies import REGISTRY, QueryContext, Selection
from ccma.strategies.base import PoolData
from ccma.student import Student, StudentConfig, StudentNet
from ccma.teacher import teacher_log_posterior

CPU = torch.device("cpu")


# ---------------------------------------------------------------- shared fixtures and references

def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log softmax (n, K) in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances (n, m) in float64, by broadcasting."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@dataclass(frozen=True)
class HandStudent:
    """A student fixed by hand: adapter a(h) = (h - mean) / scale (batch norm in eval mode),
    head logits = a(h) W^T + b. ``build()`` gives the real ``Student``; the other methods are
    the numpy re-computation the tests compare against. weight (K, D); the rest (K,) / (D,)."""

    weight: np.ndarray
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    def adapter(self, h: np.ndarray) -> np.ndarray:
        return (np.asarray(h, dtype=np.float64) - self.mean) / self.scale

    def logits(self, h: np.ndarray) -> np.ndarray:
        return self.adapter(h) @ self.weight.T + self.bias

    def log_proba(self, h: np.ndarray) -> np.ndarray:
        return log_softmax(self.logits(h))

    def build(self, dropout: float = 0.0) -> Student:
        k, d = self.weight.shape
        net = StudentNet(d, k, dropout, torch.Generator().manual_seed(0))
        f32 = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
        with torch.no_grad():
            net.norm.running_mean.copy_(f32(self.mean))
            net.norm.running_var.copy_(f32(np.square(self.scale) - net.norm.eps))
            net.head.weight.copy_(f32(self.weight))
            net.head.bias.copy_(f32(self.bias))
        net.eval()
        return Student(net=net, device=CPU, epochs=0, train_loss=0.0,
                       config=StudentConfig(dropout=dropout, device="cpu"))


# K = 3 classes on D = 3 features; the adapter shifts by ``mean`` and divides by ``scale``,
# so h is dominated by its third coordinate while a(h) weighs all three alike.
HS = HandStudent(weight=np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [-1.0, -1.0, 0.0]]),
                 bias=np.array([0.1, 0.0, -0.1]),
                 mean=np.array([3.0, -2.0, 5.0]), scale=np.array([2.0, 0.5, 4.0]))


def spread(seed: int, n: int, student: HandStudent = HS) -> np.ndarray:
    """n backbone features h (n, D) around the student's batch-norm mean with its scale:
    a(h) is standard normal, h itself is not."""
    rng = np.random.default_rng(seed)
    return student.mean + student.scale * rng.standard_normal((n, len(student.mean)))


def make_pool(student_features, n_classes: int = 3, labels=None, teacher=None, cal_student=None,
              cal_teacher=None, cal_labels=None, prototypes=None) -> PoolData:
    """PoolData with the given arrays; what a test leaves out is a harmless placeholder
    (zero labels, 2-d zero teacher embeddings, a one-row calibration split)."""
    h = np.asarray(student_features, dtype=np.float32)
    n = len(h)
    f32 = lambda a, default: np.asarray(default if a is None else a, dtype=np.float32)  # noqa: E731
    teacher = f32(teacher, np.zeros((n, 2)))
    return PoolData(student=h, teacher=teacher,
                    labels=np.asarray(np.zeros(n) if labels is None else labels, dtype=np.int64),
                    rows=np.arange(n), cal_student=f32(cal_student, h[:1]),
                    cal_teacher=f32(cal_teacher, teacher[:1]),
                    cal_labels=np.asarray(np.zeros(1) if cal_labels is None else cal_labels,
                                          dtype=np.int64),
                    prototypes=f32(prototypes, np.eye(n_classes, teacher.shape[1])),
                    n_classes=n_classes)


def query(name: str, pool: PoolData, labeled, student: Student | None, budget: int,
          seed: int = 0, **params) -> Selection:
    """The registered strategy's batch, after checking it is b distinct unlabelled positions."""
    ctx = QueryContext(data=pool, labeled=np.asarray(labeled, dtype=np.int64), student=student,
                       params=REGISTRY[name].effective(params), seed=1, round=1, device=CPU)
    sel = REGISTRY[name].query(ctx, budget, np.random.default_rng(seed))
    assert len(sel.indices) == budget and len(set(sel.indices.tolist())) == budget
    assert not set(sel.indices.tolist()) & set(np.asarray(labeled).tolist())
    return sel


def assert_tells_apart(expected, **wrong):
    """Each answer a wrong wiring would give differs from the expected one."""
    for why, answer in wrong.items():
        assert list(answer) != list(expected), f"the pool cannot tell apart: {why}"


def assert_frequencies(counts: np.ndarray, p: np.ndarray, draws: int, z: float = 4.5):
    """Observed counts (n,) out of ``draws`` match probabilities p (n,) within z binomial
    standard errors (plus one draw, for p near 1); where p = 0 the count must be 0."""
    slack = np.where(p > 0, z * np.sqrt(p * (1 - p) / draws) + 1.0 / draws, 0.0)
    assert np.all(np.abs(counts / draws - p) <= slack), (counts / draws, p)


def top(scores: np.ndarray, candidates, budget: int) -> list[int]:
    """The ``budget`` candidates with the highest scores, highest first (no ties expected)."""
    candidates = list(candidates)
    ranked = sorted(candidates, key=lambda i: -scores[i])
    return ranked[:budget]


def unlabelled(n: int, labeled) -> list[int]:
    return [i for i in range(n) if i not in set(labeled)]


# ---------------------------------------------------------------- baselines: random

def test_random_is_uniform_over_the_unlabelled_only():
    h = spread(0, 8)
    labeled, budget, draws = [1, 4], 2, 3000
    counts = np.zeros(8)
    for seed in range(draws):
        counts[query("random", make_pool(h), labeled, None, budget, seed).indices] += 1
    p = np.full(8, budget / len(unlabelled(8, labeled)))
    p[labeled] = 0.0
    assert_frequencies(counts, p, draws)
    assert (query("random", make_pool(h), labeled, None, budget, 7).indices.tolist()
            == query("random", make_pool(h), labeled, None, budget, 7).indices.tolist())


# ---------------------------------------------------------------- baselines: point uncertainty

def least_confidence(lp):
    return 1.0 - np.exp(lp.max(axis=1))


def entropy_of(lp):
    return -(np.exp(lp) * lp).sum(axis=1)


def negative_margin(lp):
    p = np.sort(np.exp(lp), axis=1)
    return -(p[:, -1] - p[:, -2])


UNCERTAINTY_SCORES = {"uncertainty": least_confidence, "entropy": entropy_of,
                      "margins": negative_margin}


@pytest.mark.parametrize("name", UNCERTAINTY_SCORES)
def test_uncertainty_family_on_the_student_posterior(name):
    h = spread(0, 12)
    score = UNCERTAINTY_SCORES[name]
    scores = score(HS.log_proba(h))
    labeled = [int(np.argmax(scores))]          # the most uncertain point is already labelled
    unl = unlabelled(12, labeled)
    expected = top(scores, unl, 3)
    sel = query(name, make_pool(h), labeled, HS.build(), 3)
    assert sel.indices.tolist() == expected
    head_on_h = score(log_softmax(h @ HS.weight.T + HS.bias))
    others = {f"{other}_instead": top(fn(HS.log_proba(h)), unl, 3)
              for other, fn in UNCERTAINTY_SCORES.items() if other != name}
    assert_tells_apart(expected, adapter_skipped=top(head_on_h, unl, 3),
                       labelled_not_excluded=top(scores, range(12), 3),
                       lowest_taken=top(-scores, unl, 3), **others)


# ---------------------------------------------------------------- baselines: BALD and PowerBALD

# A student without a batch-norm shift (only the scale), so that an all-zero input has the
# near-uniform posterior softmax(bias) and dropping inputs changes the others moderately:
# BALD scores spread over (0, 0.7) instead of saturating.
BALD_HS = replace(HS, mean=np.zeros(3), scale=np.array([0.7, 0.5, 1.5]))
DROPOUT = 0.5


def exact_bald(student: HandStudent, h: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """BALD under input dropout, exactly: H(E p) - E H(p), the expectation over all 2^D
    masks m with their probabilities, inputs h * m / (1 - p). Returns BALD and H(E p)."""
    mean = np.zeros((len(h), student.weight.shape[0]))
    mean_entropy = np.zeros(len(h))
    for mask in itertools.product([0.0, 1.0], repeat=h.shape[1]):
        m = np.array(mask)
        weight = np.prod(np.where(m == 1.0, 1.0 - p, p))
        lp = student.log_proba(h * m / (1.0 - p))
        mean += weight * np.exp(lp)
        mean_entropy += weight * entropy_of(lp)
    entropy_of_mean = -(mean * np.log(mean)).sum(axis=1)
    return entropy_of_mean - mean_entropy, entropy_of_mean


def bald_pool() -> np.ndarray:
    """8 features; row 3 is all zeros: dropout cannot change it, so its BALD is exactly 0
    although its predictive entropy is the highest."""
    h = 1.5 * np.random.default_rng(5).standard_normal((8, 3))
    h[3] = 0.0
    return h


def test_bald_takes_the_highest_mutual_information():
    h = bald_pool()
    bald, entropy_of_mean = exact_bald(BALD_HS, h, DROPOUT)   # BALD 0.29 0.47 0.29 0 0.62 0.36 0.27 0.24
    labeled = [int(np.argmax(bald))]
    unl = unlabelled(8, labeled)
    expected = top(bald, unl, 2)    # margins of 0.07 or more: the MC noise of 400 passes is ~0.01
    sel = query("bald", make_pool(h), labeled, BALD_HS.build(DROPOUT), 2, mc_passes=400)
    assert sel.indices.tolist() == expected
    assert_tells_apart(expected, entropy_of_mean=top(entropy_of_mean, unl, 2),
                       entropy_without_dropout=top(entropy_of(BALD_HS.log_proba(h)), unl, 2),
                       labelled_not_excluded=top(bald, range(8), 2))


def test_powerbald_draws_in_proportion_to_bald_to_the_power_beta():
    # two positive scores (BALD ratio about 1.9), two zero-BALD rows, the best one labelled
    h = bald_pool()[[1, 7, 3, 3, 4]]
    bald = exact_bald(BALD_HS, h, DROPOUT)[0]
    student, beta, draws = BALD_HS.build(DROPOUT), 2.0, 400
    counts = np.zeros(5)
    for seed in range(draws):
        sel = query("powerbald", make_pool(h), [4], student, 1, seed, mc_passes=30, power_beta=beta)
        counts[sel.indices] += 1
    p = np.r_[bald[:2] ** beta, 0.0, 0.0, 0.0]
    p /= p.sum()
    assert_frequencies(counts, p, draws)
    linear = np.r_[bald[:2], 0.0, 0.0, 0.0] / bald[:2].sum()
    assert np.abs(linear - p).max() > 6 * np.sqrt(p[0] * (1 - p[0]) / draws)   # beta matters
    # only positive scores are drawn; the rest of the batch is uniform and recorded
    sel = query("powerbald", make_pool(h), [4], student, 3, mc_passes=30)
    assert sorted(sel.indices[:2].tolist()) == [0, 1] and sel.indices[2] in (2, 3)
    assert sel.fallback == "only 2 BALD scores were positive; 1 of 3 drawn uniformly at random"


# ---------------------------------------------------------------- baselines: BADGE

def gradient_embedding(student: HandStudent, h: np.ndarray, features: np.ndarray) -> np.ndarray:
    """The last-layer gradient at the predicted label, written out: (p - onehot(argmax p))
    outer ``features``, flattened (n, K * D)."""
    p = np.exp(student.log_proba(h))
    rows = []
    for p_i, f_i in zip(p, features):
        z = p_i.copy()
        z[np.argmax(p_i)] -= 1.0
        rows.append(np.outer(z, f_i).ravel())
    return np.array(rows)


def test_badge_seeds_kmeans_pp_on_adapter_gradients():
    h = spread(0, 8)
    g = gradient_embedding(HS, h, HS.adapter(h))
    norms = np.linalg.norm(g, axis=1)
    labeled = [int(np.argmax(norms))]
    unl = unlabelled(8, labeled)
    first = top(norms, unl, 1)
    on_backbone = np.linalg.norm(gradient_embedding(HS, h, h), axis=1)
    assert_tells_apart(first, backbone_features=top(on_backbone, unl, 1),
                       labelled_not_excluded=top(norms, range(8), 1))
    # a copy of the first centre goes last: it ties for the largest gradient (the first of
    # equals is taken) and, at distance 0, can never be the second centre
    h = np.vstack([h, h[first]])
    g = np.vstack([g, g[first]])
    student = HS.build()
    assert query("badge", make_pool(h), labeled, student, 1).indices.tolist() == first
    # the second centre: D^2 sampling, P(j) proportional to ||g_j - g_first||^2
    draws, counts = 1000, np.zeros(9)
    for seed in range(draws):
        sel = query("badge", make_pool(h), labeled, student, 2, seed)
        assert sel.indices[0] == first[0]
        counts[sel.indices[1]] += 1
    d2 = ((g - g[first[0]]) ** 2).sum(axis=1)
    d2[labeled + first] = 0.0
    assert d2[8] == 0.0
    assert_frequencies(counts, d2 / d2.sum(), draws)


# ---------------------------------------------------------------- baselines: Alfa-mix

# K = 2, D = 2: class 0 iff a_1 > 0. The batch-norm shift puts every labelled point on class
# 0's side in raw h coordinates, so anchors taken from h instead of a(h) flip other points.
ALFA_HS = HandStudent(weight=np.array([[1.0, 0.0], [-1.0, 0.0]]), bias=np.zeros(2),
                      mean=np.array([10.0, 0.0]), scale=np.array([1.0, 1.0]))


def flips_within(z: np.ndarray, pred: int, anchors: np.ndarray, cap: float,
                 student: HandStudent) -> bool:
    """Does some mix z + alpha (anchor - z), alpha in [0, cap]^D, change the head's label?
    The head is linear, so it suffices to try the corners of the box."""
    for anchor in anchors:
        for corner in itertools.product([0.0, cap], repeat=len(z)):
            mixed = z + np.array(corner) * (anchor - z)
            if np.argmax(mixed @ student.weight.T + student.bias) != pred:
                return True
    return False


def alfamix_candidates(student: HandStudent, h, labeled, labels, budget: int,
                       anchor_features: np.ndarray) -> list[int]:
    """The unlabelled points whose label flips towards a class anchor (the mean of
    ``anchor_features`` over the labelled points of the class), the cap on alpha grown by
    1/32 until more than b flip."""
    a = student.adapter(h)
    anchors = np.array([anchor_features[[i for i in labeled if labels[i] == c]].mean(axis=0)
                        for c in range(len(student.bias))])
    unl = unlabelled(len(h), labeled)
    pred = {i: int(np.argmax(a[i] @ student.weight.T + student.bias)) for i in unl}
    cap = 0.0
    while cap < 1.0:
        cap = min(1.0, cap + 1 / 32)
        cand = [i for i in unl if flips_within(a[i], pred[i], anchors, cap, student)]
        if len(cand) > budget:
            break
    return cand


@pytest.mark.parametrize("mode", ["learned", "closed-form"])
def test_alfamix_clusters_the_points_that_flip_towards_labelled_anchors(mode):
    a = np.array([[3.0, 0.5], [3.0, -0.5], [-3.0, 1.0], [-3.0, -1.0],   # labelled
                  [0.05, 1.0], [0.05, 1.0], [-0.05, -1.0],                # near the boundary
                  [5.0, 0.0], [-5.0, 1.0], [6.0, -2.0], [-4.0, -3.0]])    # far from it
    h = ALFA_HS.mean + ALFA_HS.scale * a
    labels = [0, 0, 1, 1] + [0] * 7
    labeled = [0, 1, 2, 3]
    candidates = alfamix_candidates(ALFA_HS, h, labeled, labels, 2, ALFA_HS.adapter(h))
    assert candidates == [4, 5, 6]
    assert_tells_apart(candidates, anchors_from_backbone=alfamix_candidates(
        ALFA_HS, h, labeled, labels, 2, anchor_features=h))
    # 4 and 5 coincide: k-means with b = 2 clusters on the three candidates has one answer,
    # {4, 5} and {6}, each represented by its lowest position
    sel = query("alfamix", make_pool(h, 2, labels), labeled, ALFA_HS.build(), 2,
                alfamix_alpha=mode)
    assert sorted(sel.indices.tolist()) == [4, 6] and sel.fallback is None


# ---------------------------------------------------------------- baselines: Core-set

def k_center(x: np.ndarray, labeled, budget: int, first: int | None = None) -> list[int]:
    """Greedy k-center from the labelled centres: each pick the unlabelled point farthest
    from every centre so far (lowest position on ties); ``first`` forces the first pick."""
    centres = list(labeled)
    unl = unlabelled(len(x), labeled)
    picks = []
    for step in range(budget):
        rest = [i for i in unl if i not in picks]
        if step == 0 and first is not None:
            j = first
        else:
            far = {i: min(sq_dist(x[[i]], x[[c]])[0, 0] for c in centres) for i in rest}
            j = max(rest, key=lambda i: (far[i], -i))
        picks.append(j)
        centres.append(j)
    return picks


def test_coreset_is_k_center_greedy_on_the_adapter_output_from_the_labelled_set():
    h = spread(0, 12)
    labeled = [0, 1]
    expected = k_center(HS.adapter(h), labeled, 3)
    sel = query("coreset", make_pool(h), labeled, HS.build(), 3)
    assert sel.indices.tolist() == expected and sel.fallback is None
    without_labels = [k_center(HS.adapter(h), [], 3, first=j) for j in unlabelled(12, labeled)]
    assert expected not in without_labels, "ignoring L could give the same batch"
    assert_tells_apart(expected, backbone_features=k_center(h, labeled, 3))


def test_coreset_cold_start_uses_the_backbone_features():
    h = spread(1, 12)
    labeled = [3, 7]
    expected = k_center(h, labeled, 3)
    sel = query("coreset", make_pool(h), labeled, None, 3)
    assert sel.indices.tolist() == expected
    assert sel.fallback == "cold start: no student yet; k-center on the backbone features h(x)"
    assert_tells_apart(expected, adapter_output=k_center(HS.adapter(h), labeled, 3))


# ---------------------------------------------------------------- baselines: TypiClust

def test_typiclust_takes_the_most_typical_point_of_the_largest_uncovered_blobs():
    # three blobs 100 apart in h; a(h) of this student squeezes them together (scale 1000)
    # and stretches the blobs (scale 0.01), so clustering a(h) would cut across them
    student = replace(HS, scale=np.array([1000.0, 0.01, 0.01]))
    rng = np.random.default_rng(4)
    sizes = [11, 9, 7]                       # all above the minimum cluster size of 5
    h = np.vstack([[100.0 * b, 0, 0] + rng.standard_normal((n, 3)) for b, n in enumerate(sizes)])
    blob = np.repeat(np.arange(3), sizes)

    def most_typical(members):
        k = min(20, len(members) // 2)
        d = sq_dist(h[members], h[members])
        np.fill_diagonal(d, np.inf)
        typicality = 1.0 / (np.sort(d, axis=1)[:, :k].mean(axis=1) + 1e-5)
        return members[int(np.argmax(typicality))]

    def reference(labeled):
        # fewest labelled points first, then the largest; the most typical unlabelled point
        order = sorted(range(3), key=lambda b: (np.isin(np.flatnonzero(blob == b), labeled).sum(),
                                                -sizes[b]))
        return [most_typical(np.setdiff1d(np.flatnonzero(blob == b), labeled)) for b in order[:2]]

    labeled = [int(most_typical(np.flatnonzero(blob == 0)))]   # the largest blob is covered
    expected = reference(labeled)
    sel = query("typiclust", make_pool(h), labeled, student.build(), 2)
    assert sel.indices.tolist() == expected and sel.fallback is None
    assert_tells_apart(expected, labelled_set_ignored=reference([]))


# ---------------------------------------------------------------- baselines: ProbCover

def probcover_reference(x: np.ndarray, labeled, budget: int, delta: float) -> list[int]:
    """Greedy max coverage of delta-balls on the rows of x as given: points covered by L are
    removed, then each pick is the unlabelled point covering the most uncovered points."""
    within = sq_dist(x, x) < delta**2
    covered = within[list(labeled)].any(axis=0)
    picks = []
    for _ in range(budget):
        gain = {j: int((within[j] & ~covered).sum())
                for j in unlabelled(len(x), labeled) if j not in picks}
        j = max(gain, key=lambda i: (gain[i], -i))
        picks.append(j)
        covered |= within[j]
    return picks


def test_probcover_covers_balls_of_the_normalised_backbone_features():
    h = spread(0, 30)
    labeled, delta = [0, 1], 0.22     # every pair distance is at least 0.002 away from delta
    expected = probcover_reference(unit(h), labeled, 3, delta)
    sel = query("probcover", make_pool(h), labeled, HS.build(), 3, probcover_delta=delta)
    assert sel.indices.tolist() == expected and sel.fallback is None
    assert_tells_apart(expected, adapter_output=probcover_reference(unit(HS.adapter(h)), labeled, 3, delta),
                       not_normalised=probcover_reference(h, labeled, 3, delta),
                       labelled_set_ignored=probcover_reference(unit(h), [], 3, delta))


# ---------------------------------------------------------------- baselines: UHerding

def margin_uncertainty(logits: np.ndarray) -> np.ndarray:
    p = np.exp(log_softmax(logits))
    p.sort(axis=1)
    return 1.0 - (p[:, -1] - p[:, -2])


def uherding_reference(x: np.ndarray, u: np.ndarray, labeled, budget: int,
                       cover_labeled: bool = True) -> list[int]:
    """Greedy uncertainty coverage, every gain recomputed from scratch:
    gain(c) = sum over unlabelled x of u(x) max(k(x, c) - m(x), 0), m(x) the best kernel
    value to L and the picks so far, k = exp(-d^2 / sigma^2), sigma the smallest non-zero
    distance between labelled points."""
    n = len(x)
    labeled = list(labeled)
    d_lab = np.sqrt(sq_dist(x[labeled], x[labeled]))
    sigma = d_lab[d_lab > 1e-5].min()
    k = np.exp(-sq_dist(x, x) / sigma**2)
    m = k[:, labeled].max(axis=1) if cover_labeled else np.zeros(n)
    weight = np.where(np.isin(np.arange(n), labeled), 0.0, u)
    picks = []
    for _ in range(budget):
        gain = {c: float(weight @ np.maximum(k[:, c] - m, 0.0))
                for c in unlabelled(n, labeled) if c not in picks}
        c = max(gain, key=gain.get)
        picks.append(c)
        m = np.maximum(m, k[:, c])
    return picks


def test_uherding_weights_kernel_coverage_by_margin_uncertainty():
    h = spread(2, 30)
    labeled = [0, 1, 2]     # too few to hold out a calibration split: temperature 1
    u = margin_uncertainty(HS.logits(h))
    expected = uherding_reference(unit(h), u, labeled, 3)
    sel = query("uherding", make_pool(h), labeled, HS.build(), 3)
    assert sel.indices.tolist() == expected
    assert sel.fallback == "3 labels are too few to hold out a calibration split: T = 1"
    assert_tells_apart(
        expected,
        unweighted_max_herding=uherding_reference(unit(h), np.ones(30), labeled, 3),
        kernel_on_adapter_output=uherding_reference(unit(HS.adapter(h)), u, labeled, 3),
        head_on_backbone=uherding_reference(
            unit(h), margin_uncertainty(h @ HS.weight.T + HS.bias), labeled, 3),
        labelled_set_not_covering=uherding_reference(unit(h), u, labeled, 3, cover_labeled=False))


# ---------------------------------------------------------------- core functions

def test_nearest_distinct_gives_each_centre_the_nearest_point_not_yet_taken():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [0.0, 3.0]])
    centres = np.array([[0.2, 0.0], [0.1, 0.0], [9.0, 0.0], [0.1, 0.1]])
    # centre 0 takes point 0; centre 1 (also nearest to 0) gets the next, point 1; centre 3
    # finds 0 and 1 taken and 2 farther than 3
    assert nearest_distinct(points, centres).tolist() == [0, 1, 2, 3]


def test_kmeans_selection_takes_the_candidate_nearest_each_direction_cluster():
    # three groups of directions, each candidate at its own length: after normalising, the
    # groups are the clusters; without normalising the lengths would decide
    rng = np.random.default_rng(0)
    groups = [(d + 0.05 * rng.standard_normal((4, 3))) for d in np.eye(3)]
    x = np.vstack(groups) * rng.uniform(1.0, 50.0, size=(12, 1))
    order = rng.permutation(12)               # the answer is not the first b rows
    x = x[order]
    expected = []
    for g in range(3):
        members = np.flatnonzero(order // 4 == g)
        centre = unit(x[members]).mean(axis=0)
        expected.append(int(members[np.argmin(sq_dist(unit(x[members]), centre[None])[:, 0])]))
    assert sorted(kmeans_selection(x, 3, seed=0, niter=20).tolist()) == sorted(expected)
    assert sorted(expected) != list(range(3))


@pytest.mark.parametrize("tau", [0.01, 0.5])
def test_teacher_log_posterior_is_softmax_of_cosines_over_tau(tau):
    z = unit(np.array([[1.0, 0.2, 0.0], [0.0, 1.0, 1.0]]))
    protos = unit(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.6, 0.8]]))
    cosines = np.array([[float(np.dot(zi, t)) for t in protos] for zi in z])
    np.testing.assert_allclose(teacher_log_posterior(z, protos, tau), log_softmax(cosines / tau),
                               rtol=1e-12, atol=1e-12)
