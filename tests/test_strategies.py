"""The eleven baselines besides random (docs/method.md §7): hand-built cases with known answers,
independent re-computations, determinism, and every fallback path (some through the loop)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ccma.geometry import kmeans_plus_plus
from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER, RunConfig, load_run_data, run
from ccma.strategies import REGISTRY, QueryContext, uherding
from ccma.strategies.alfamix import LinearHead, alpha_step, class_anchors, find_candidates
from ccma.strategies.badge import kmeanspp_seeding
from ccma.strategies.bald import bald_scores, mc_bald
from ccma.strategies.base import PoolData
from ccma.strategies.coreset import k_center_greedy
from ccma.strategies.powerbald import power_sample
from ccma.strategies.probcover import (ball_graph, greedy_cover, impure_radius_sq,
                                       purity_delta_sq)
from ccma.strategies.typiclust import typicality
from ccma.strategies.uherding import (TEMPERATURES, best_temperature, expected_calibration_error,
                                      herding, smallest_nonzero_distance)
from ccma.student import Student, StudentConfig, StudentNet, train_student

CPU = torch.device("cpu")
BASELINES = ("uncertainty", "entropy", "margins", "bald", "powerbald", "badge", "alfamix",
             "coreset", "typiclust", "probcover", "uherding")
FAST = StudentConfig(max_epochs=60, patience=5, device="cpu")


# ---------------------------------------------------------------- hand-built contexts

def hand_student(weight, bias=None, dropout: float = 0.0) -> Student:
    """A real student whose adapter is the identity (batch-norm statistics fixed so that
    a(h) = h) and whose head is ``weight`` (K, D), ``bias`` (K,)."""
    weight = np.asarray(weight, dtype=np.float32)
    net = StudentNet(weight.shape[1], weight.shape[0], dropout, torch.Generator().manual_seed(0))
    net.norm.running_mean.zero_()
    net.norm.running_var.fill_(1.0 - net.norm.eps)
    with torch.no_grad():
        net.head.weight.copy_(torch.as_tensor(weight))
        net.head.bias.copy_(torch.zeros(weight.shape[0]) if bias is None else torch.as_tensor(bias))
    net.eval()
    return Student(net=net, device=CPU, epochs=0, train_loss=0.0,
                   config=StudentConfig(dropout=dropout, device="cpu"))


def hand_pool(features, labels, n_classes: int) -> PoolData:
    features = np.asarray(features, dtype=np.float32)
    n = len(features)
    return PoolData(student=features, teacher=np.zeros((n, 2), np.float32),
                    labels=np.asarray(labels, dtype=np.int64), rows=np.arange(n),
                    cal_student=features[:1], cal_teacher=np.zeros((1, 2), np.float32),
                    cal_labels=np.zeros(1, np.int64), prototypes=np.eye(n_classes, 2, dtype=np.float32),
                    n_classes=n_classes)


def context(name: str, pool: PoolData, labeled, student, **params) -> QueryContext:
    return QueryContext(data=pool, labeled=np.asarray(labeled, dtype=np.int64), student=student,
                        params=REGISTRY[name].effective(params), seed=1, round=1, device=CPU)


def ask(name: str, ctx: QueryContext, budget: int, seed: int = 0):
    sel = REGISTRY[name].query(ctx, budget, np.random.default_rng(seed))
    assert len(sel.indices) == budget and len(np.unique(sel.indices)) == budget
    assert ctx.unlabeled_mask[sel.indices].all()
    return sel


def logit_pool(probs, labeled_probs=()):
    """Pool rows whose logits are log p (identity head), labelled rows last."""
    rows = np.log(np.asarray(list(probs) + list(labeled_probs), dtype=np.float64))
    labeled = np.arange(len(probs), len(rows))
    k = rows.shape[1]
    return hand_pool(rows, np.zeros(len(rows)), k), labeled, hand_student(np.eye(k))


@pytest.fixture(scope="module")
def trained(synth_dir):
    """The tiny synthetic pool, 30 random labels and a student trained on them."""
    pool = load_run_data(synth_dir, "syn", DEFAULT_TEACHER, DEFAULT_STUDENT).pool
    labeled = np.random.default_rng(3).choice(len(pool.labels), 30, replace=False)
    student = train_student(pool.student[labeled], pool.labels[labeled], pool.n_classes, FAST, seed=5)
    return pool, labeled, student


# ---------------------------------------------------------------- point-estimate uncertainty

UNCERTAIN_ROWS = [(0.98, 0.01, 0.01),   # 0: confident
                  (0.50, 0.49, 0.01),   # 1: smallest margin
                  (0.40, 0.30, 0.30),   # 2: least confident, highest entropy
                  (0.70, 0.20, 0.10)]   # 3: second-highest entropy (0.802 > 0.742 of row 1)


@pytest.mark.parametrize("name, budget, expected", [
    ("uncertainty", 1, [2]), ("uncertainty", 2, [2, 1]),
    ("entropy", 1, [2]), ("entropy", 2, [2, 3]),
    ("margins", 1, [1]), ("margins", 2, [1, 2]),
])
def test_uncertainty_scores_pick_the_known_rows(name, budget, expected):
    # the labelled row is the most uncertain of all and must never come back
    pool, labeled, student = logit_pool(UNCERTAIN_ROWS, [(0.34, 0.33, 0.33)])
    assert ask(name, context(name, pool, labeled, student), budget).indices.tolist() == expected


@pytest.mark.parametrize("name", ["uncertainty", "entropy", "margins"])
def test_ties_are_broken_by_the_seed(name):
    pool, labeled, student = logit_pool([(0.5, 0.3, 0.2)] * 12)
    ctx = context(name, pool, labeled, student)
    picks = {tuple(ask(name, ctx, 3, seed).indices) for seed in range(8)}
    assert len(picks) > 1
    assert ask(name, ctx, 3, 5).indices.tolist() == ask(name, ctx, 3, 5).indices.tolist()


# ---------------------------------------------------------------- BALD and PowerBALD

def test_bald_scores_by_hand():
    disagree = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])      # two certain, opposite passes
    agree = np.array([[[0.3, 0.7]], [[0.3, 0.7]]])
    uniform = np.full((3, 1, 4), 0.25)
    assert bald_scores(disagree)[0] == pytest.approx(np.log(2))
    assert bald_scores(agree)[0] == pytest.approx(0.0, abs=1e-15)
    assert bald_scores(uniform)[0] == pytest.approx(0.0, abs=1e-15)
    half = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])           # H(0.75, 0.25) - (0 + log 2) / 2
    h = -(0.75 * np.log(0.75) + 0.25 * np.log(0.25))
    assert bald_scores(half)[0] == pytest.approx(h - np.log(2) / 2)


def test_bald_is_zero_without_dropout_and_positive_with_it():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((40, 6))
    w = rng.standard_normal((3, 6))
    pool = hand_pool(h, np.zeros(40), 3)
    off = mc_bald(context("bald", pool, [], hand_student(w)), np.arange(40), 20, rng)
    on = mc_bald(context("bald", pool, [], hand_student(w, dropout=0.5)), np.arange(40), 20, rng)
    assert np.abs(off).max() < 1e-12
    assert on.min() >= -1e-12 and on.max() > 1e-2


@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_powerbald_draws_follow_the_power_distribution(beta):
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    rng = np.random.default_rng(0)
    draws = 20000
    first = np.bincount([power_sample(scores, 1, beta, rng)[0] for _ in range(draws)], minlength=4)
    p = scores**beta / (scores**beta).sum()
    assert np.abs(first / draws - p).max() < 0.015   # > 4 standard errors
    # two without replacement: P(i in S) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    pairs = np.zeros(4)
    for _ in range(draws):
        pairs[power_sample(scores, 2, beta, rng)] += 1
    exact = np.array([p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i)
                      for i in range(4)])
    assert np.abs(pairs / draws - exact).max() < 0.015


def test_powerbald_never_draws_non_positive_scores():
    rng = np.random.default_rng(1)
    scores = np.array([0.0, -1e-12, 0.5, 0.0])
    assert {int(power_sample(scores, 3, 1.0, rng)[0]) for _ in range(50)} == {2}
    assert power_sample(scores, 3, 1.0, rng).tolist() == [2]


def test_powerbald_fills_at_random_when_too_few_scores_are_positive():
    # one Monte-Carlo pass: the mean is the pass itself, so every BALD score is exactly 0
    rng = np.random.default_rng(2)
    pool = hand_pool(rng.standard_normal((30, 4)), np.zeros(30), 3)
    ctx = context("powerbald", pool, [0, 1], hand_student(rng.standard_normal((3, 4)), dropout=0.5),
                  mc_passes=1)
    sel = ask("powerbald", ctx, 5)
    assert sel.fallback == "only 0 BALD scores were positive; 5 of 5 drawn uniformly at random"


# ---------------------------------------------------------------- BADGE

def test_badge_first_pick_is_the_largest_gradient():
    # head reads the first 3 features as logits; the 4th only scales |a| (and so ||g||)
    w = np.hstack([np.eye(3), np.zeros((3, 1))])
    logits = np.log([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.6, 0.3, 0.1], [0.5, 0.4, 0.1]])
    extra = np.array([[0.0], [0.0], [3.0], [0.0]])
    h = np.hstack([logits, extra])
    g_norms = [np.linalg.norm(np.outer(np.exp(r) - np.eye(3)[np.argmax(r)], a))
               for r, a in zip(logits, h)]
    assert int(np.argmax(g_norms)) == 2
    ctx = context("badge", hand_pool(h, np.zeros(4), 3), [], hand_student(w))
    assert ask("badge", ctx, 1).indices.tolist() == [2]


def test_badge_seeding_equals_k_means_pp_on_materialised_gradients():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((60, 5)).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=60)
    z = (p - np.eye(4)[p.argmax(1)]).astype(np.float32)
    chosen, seeded = kmeanspp_seeding(a, z, 12, np.random.default_rng(9), CPU)
    # the same algorithm on the explicit (60, 4 * 5) embeddings, same random stream
    g = np.stack([np.outer(zi, ai).ravel() for zi, ai in zip(z, a)]).astype(np.float64)
    ref_rng = np.random.default_rng(9)
    ref = [int(np.argmax((g * g).sum(1)))]
    d2 = ((g - g[ref[0]]) ** 2).sum(1)
    while len(ref) < 12:
        d2[ref] = 0.0
        ref.append(int(ref_rng.choice(60, p=d2 / d2.sum())))
        d2 = np.minimum(d2, ((g - g[ref[-1]]) ** 2).sum(1))
    assert chosen.tolist() == ref and seeded == 12


def test_badge_falls_back_when_every_gradient_is_zero():
    h = np.zeros((8, 2))
    h[:, 0] = 1e4           # p = (1, 0) exactly: p - onehot = 0, every g = 0
    ctx = context("badge", hand_pool(h, np.zeros(8), 2), [7], hand_student(np.eye(2)))
    sel = ask("badge", ctx, 3)
    assert sel.fallback == ("all gradient-embedding distances were 0 after 1 centres; "
                            "2 of 3 drawn uniformly at random")


# ---------------------------------------------------------------- Alfa-mix

def test_class_anchors_by_hand():
    z = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    anchors = class_anchors(z, np.array([0, 0, 2]), 3)
    np.testing.assert_allclose(anchors, [[1, 0], [2 / 3, 4 / 3], [0, 4]], rtol=1e-6)


def test_learned_alpha_step_equals_a_fresh_torch_adam_step():
    gen = torch.Generator().manual_seed(0)
    z, anchor = torch.randn(30, 8, generator=gen), torch.randn(8, generator=gen)
    w, b = torch.randn(5, 8, generator=gen), torch.randn(5, generator=gen)
    pred = torch.randint(0, 5, (30,), generator=gen)
    alpha0 = torch.rand(30, 8, generator=gen) * 0.3
    logits, mine = alpha_step(alpha0.clone(), z, anchor[None] - z, torch.nn.functional.one_hot(pred, 5).float(),
                              LinearHead(w, b), 0.1, 0.01, 0.25)
    # the authors' step: autograd through the mix, a new torch Adam, then the clip
    a = alpha0.clone().requires_grad_(True)
    opt = torch.optim.Adam([a], lr=0.1)
    out = torch.nn.functional.linear((1 - a) * z + a * anchor, w, b)
    loss = (-torch.nn.functional.cross_entropy(out, pred, reduction="none") + 0.01 * a.norm(dim=1)).sum()
    loss.backward()
    opt.step()
    torch.testing.assert_close(logits, out.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mine, a.detach().clamp(1e-8, 0.25), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["learned", "closed-form"])
def test_alfamix_flips_only_points_near_the_boundary(mode):
    # two classes split by the sign of the first coordinate; anchors at (+1, 0) and (-1, 0)
    head = LinearHead(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), torch.zeros(2))
    z = np.array([[0.01, 0.3], [5.0, 0.1], [-0.01, -0.2], [-5.0, 0.0]], dtype=np.float32)
    pred = np.array([0, 0, 1, 1])
    anchors = np.array([[1.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    params = REGISTRY["alfamix"].effective({"alfamix_alpha": mode})
    flips = find_candidates(z, pred, anchors, head, 1 / 32, params, CPU,
                            torch.Generator().manual_seed(0))
    assert flips.tolist() == [True, False, True, False]


def test_alfamix_falls_back_when_nothing_flips():
    # every label is class 0, so every anchor sits on class 0's side: no mix can flip
    h = np.array([[1.0, 0.0], [2.0, 0.5], [3.0, 0.0], [0.5, -0.2], [4.0, 1.0], [1.5, 0.0]])
    ctx = context("alfamix", hand_pool(h, np.zeros(6), 2), [0, 1],
                  hand_student([[1.0, 0.0], [-1.0, 0.0]]))
    sel = ask("alfamix", ctx, 2)
    assert sel.fallback == ("0 candidates flipped (alpha cap 1) and k-means kept 0; "
                            "2 of 2 drawn uniformly at random")


# ---------------------------------------------------------------- Core-set

def test_coreset_takes_the_farthest_point_first():
    x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [5.0, 0.0], [5.5, 0.0]])
    ctx = context("coreset", hand_pool(x, np.zeros(5), 2), [0], hand_student(np.eye(2)))
    assert ask("coreset", ctx, 1).indices.tolist() == [4]
    assert ask("coreset", ctx, 2).indices.tolist() == [4, 2]   # 2 is 2 from 0; 5 is 0.5 from 5.5


def test_k_center_greedy_minimises_the_covering_radius_greedily():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3)).astype(np.float32)
    chosen = k_center_greedy(x[5:], x[:5], 6, CPU, rng)
    centres = list(x[:5])
    for j in chosen:   # each pick is the point farthest from the centres so far
        d = np.min([((x[5:] - c) ** 2).sum(1) for c in centres], axis=0)
        assert j == int(np.argmax(d))
        centres.append(x[5 + j])


# ---------------------------------------------------------------- TypiClust

def blob(centre, axes: int, dim: int = 8) -> np.ndarray:
    """centre plus +-e_i for i < axes: the centre is the unique most typical point."""
    offsets = np.vstack([np.zeros(dim), np.eye(dim)[:axes], -np.eye(dim)[:axes]])
    return centre + offsets


def test_typiclust_picks_the_densest_point_of_the_largest_uncovered_clusters():
    far = 100 * np.eye(8)
    a, b, c, d = blob(far[0], 8), blob(far[1], 8), blob(far[2], 4), blob(far[3], 1)[:2]
    d = np.vstack([d, far[3] + [[0, 0.5] + [0] * 6, [0, -0.5] + [0] * 6]])   # 4 points
    x = np.vstack([a, b, c, d])
    ia, ib, ic = 0, len(a), len(a) + len(b)
    labeled = [ia + 1, ia + 2]     # A is covered; 2 labels + 2 picks = 4 clusters = 4 blobs
    ctx = context("typiclust", hand_pool(x, np.zeros(len(x)), 2), labeled, None)
    sel = ask("typiclust", ctx, 2)
    # B (17 points) before C (9); D (4 points) is too small to visit
    assert sel.indices.tolist() == [ib, ic] and sel.fallback is None


def test_typicality_equals_brute_force():
    x = np.random.default_rng(1).standard_normal((30, 3)).astype(np.float32)
    d = ((x[:, None] - x[None]) ** 2).sum(-1).astype(np.float64)
    np.fill_diagonal(d, np.inf)
    expected = 1.0 / (np.sort(d, axis=1)[:, :5].mean(1) + 1e-5)
    np.testing.assert_allclose(typicality(x, 5, CPU), expected, rtol=1e-5)


def test_typiclust_records_running_out_of_uncovered_clusters():
    x = np.vstack([blob(np.zeros(8), 8), blob(50 * np.eye(8)[0], 8)])
    labeled = [1, 20]          # one label in each blob
    ctx = context("typiclust", hand_pool(x, np.zeros(len(x)), 2), labeled, None,
                  typiclust_max_clusters=2)
    sel = ask("typiclust", ctx, 2)
    assert sorted(sel.indices.tolist()) == [0, 17]     # still the centres, of covered clusters
    assert sel.fallback == ("no uncovered cluster left for 2 of 2 picks: taken from the "
                            "clusters with the fewest labels")
    tiny = context("typiclust", hand_pool(x, np.zeros(len(x)), 2), labeled, None,
                   typiclust_min_size=40)
    assert ask("typiclust", tiny, 3).fallback == (
        "no cluster above the minimum size had unlabelled points left; 3 of 3 drawn uniformly at random")


# ---------------------------------------------------------------- ProbCover

def test_probcover_takes_the_point_covering_the_most():
    # stars on the unit sphere (ProbCover normalises): a centre c and arms c +- 0.3 e_i, e_i
    # orthogonal to c; normalised, an arm is 0.29 from c, 0.41 from an orthogonal arm and
    # 0.57 from the opposite one
    e = np.eye(4)
    star = lambda c, axes: [c] + [c + s * 0.3 * e[i] for i in range(axes) for s in (1, -1)]  # noqa: E731
    big = star(e[3], 2)          # with delta 0.5 the centre covers 5 points, each arm 4
    small = star(e[2], 1)        # the centre covers 3
    x = np.array(big[1:] + small + [-e[3], big[0]])   # the big centre goes last
    ctx = context("probcover", hand_pool(x, np.zeros(len(x)), 2), [], None, probcover_delta=0.5)
    sel = ask("probcover", ctx, 2)
    assert sel.indices.tolist() == [len(x) - 1, 4] and sel.fallback is None


def test_purity_delta_by_hand_and_by_brute_force():
    r = np.arange(1.0, 11.0)
    assert purity_delta_sq(r**2, 0.8) == 9.0          # r >= 3 holds for 8 of 10 points
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 3)).astype(np.float32)
    pseudo = (x[:, 0] > 0).astype(np.int64)
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    r_sq = impure_radius_sq(x, pseudo, CPU)
    np.testing.assert_allclose(r_sq, np.where(pseudo[:, None] != pseudo[None], d, np.inf).min(1),
                               rtol=1e-4, atol=1e-5)
    delta_sq = purity_delta_sq(r_sq, 0.9)

    def purity(dsq):       # share of balls {y: |x - y|^2 < dsq} holding one pseudo-label
        inside = d < dsq
        return np.mean([len(set(pseudo[row])) == 1 for row in inside])
    assert purity(delta_sq * (1 - 1e-4)) >= 0.9 > purity(delta_sq * (1 + 1e-4))


def test_ball_graph_equals_dense_adjacency():
    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    d = ((x[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    graph = ball_graph(x, 2.0, CPU)
    np.testing.assert_array_equal(graph.toarray() > 0, (d < 2.0) | np.eye(50, dtype=bool))


def test_greedy_cover_equals_the_authors_edge_filtering():
    x = np.random.default_rng(4).standard_normal((80, 3)).astype(np.float32)
    graph = ball_graph(x, 0.8, CPU)
    labeled = np.array([3, 40])
    picked = greedy_cover(graph, labeled, 10)
    # the authors' loop: drop edges into covered points, take the largest out-degree
    coo = graph.tocoo()
    xs, ys = coo.row, coo.col
    keep = ~np.isin(ys, ys[np.isin(xs, labeled)])
    xs, ys = xs[keep], ys[keep]
    ref = []
    for _ in range(10):
        j = int(np.argmax(np.bincount(xs, minlength=80)))
        ref.append(j)
        keep = ~np.isin(ys, ys[xs == j])
        xs, ys = xs[keep], ys[keep]
    assert picked.tolist() == ref


def test_probcover_falls_back_when_everything_is_covered():
    x = np.random.default_rng(5).standard_normal((20, 3))
    ctx = context("probcover", hand_pool(x, np.zeros(20), 2), [0], None, probcover_delta=100.0)
    sel = ask("probcover", ctx, 3)
    assert sel.fallback == "every point covered after 0 picks; 3 of 3 drawn uniformly at random"


# ---------------------------------------------------------------- UHerding

def test_expected_calibration_error_by_hand():
    probs = np.array([[0.6, 0.4], [0.9, 0.1], [0.8, 0.2], [0.55, 0.45]])
    labels = np.array([0, 1, 0, 1])               # right, wrong, right, wrong
    # 4 bins: (0.5, 0.75] holds 0.6 (right) and 0.55 (wrong); (0.75, 1] holds 0.9 and 0.8
    assert expected_calibration_error(probs, labels, 4) == pytest.approx(
        0.5 * abs(0.575 - 0.5) + 0.5 * abs(0.85 - 0.5))
    assert expected_calibration_error(probs, labels, 1) == pytest.approx(abs(0.7125 - 0.5))


def test_best_temperature_at_the_ends_of_the_grid():
    # always right but barely confident: sharper is better calibrated, T = 1
    right = np.array([[0.2, 0.0], [0.0, 0.2], [0.3, 0.0]])
    assert best_temperature(right, np.array([0, 1, 0]), 2) == TEMPERATURES[0] == 1.0
    # right half of the time and very confident: flatter is better, the largest T
    coin = np.array([[8.0, 0.0], [8.0, 0.0], [0.0, 8.0], [0.0, 8.0]])
    assert best_temperature(coin, np.array([0, 1, 1, 0]), 2) == TEMPERATURES[-1] == 19.9


def test_smallest_nonzero_distance_skips_duplicates():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 0.0], [3.0, 7.0]])
    assert smallest_nonzero_distance(x) == pytest.approx(3.0)
    assert smallest_nonzero_distance(x[:2]) is None


def test_herding_first_pick_is_the_only_uncertain_point():
    x = np.random.default_rng(6).standard_normal((30, 3)).astype(np.float32)
    u = np.zeros(30)
    u[17] = 1.0
    assert herding(x, u, x[:0], 5.0, 1, CPU).tolist() == [17]


def dense_herding(x, u, lab, sigma: float, budget: int) -> tuple[list[int], float]:
    """Plain float64 reference: every gain recomputed from scratch each step. Also returns
    the share of (x, c) pairs whose kernel beats the labelled coverage at the start."""
    kern = lambda a, b: np.exp(-((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1) / sigma**2)  # noqa: E731
    k, m = kern(x, x), kern(x, lab).max(1)
    share = float((k > m[:, None]).mean())
    ref = []
    for _ in range(budget):
        gains = u @ np.maximum(k - m[:, None], 0.0)
        gains[ref] = -np.inf
        ref.append(int(np.argmax(gains)))
        m = np.maximum(m, k[:, ref[-1]])
    return ref, share


def test_herding_equals_dense_greedy():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((70, 4)).astype(np.float32)
    lab = rng.standard_normal((6, 4)).astype(np.float32)
    u = rng.uniform(size=70)
    assert herding(x, u, lab, 1.3, 8, CPU).tolist() == dense_herding(x, u, lab, 1.3, 8)[0]


def test_herding_with_a_local_kernel_equals_dense_greedy_across_blocks(monkeypatch):
    """sigma below the typical distance: the kernel is evaluated only where it can beat the
    running max, so most pairs are skipped; rows go in blocks of 7."""
    monkeypatch.setattr(uherding, "rows_per_block", lambda _: 7)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((90, 3)).astype(np.float32)
    lab = rng.standard_normal((5, 3)).astype(np.float32)
    u = rng.uniform(size=90)
    ref, share = dense_herding(x, u, lab, 0.6, 12)
    assert share < 0.5  # the skipping is exercised
    assert herding(x, u, lab, 0.6, 12, CPU).tolist() == ref


def test_uherding_fallbacks():
    rng = np.random.default_rng(8)
    h = rng.standard_normal((20, 3))
    w = rng.standard_normal((3, 3))
    # two labels cannot be split 70/30: T = 1; both at one point: no sigma
    h[[0, 1]] = h[0]
    sel = ask("uherding", context("uherding", hand_pool(h, [0, 1] + [0] * 18, 3), [0, 1],
                                  hand_student(w)), 3)
    assert sel.fallback == ("2 labels are too few to hold out a calibration split: T = 1; "
                            "no two labelled points differ: sigma = 1")
    # a student certain everywhere: margin uncertainty 0, no gain anywhere
    sure = np.zeros((12, 2))
    sure[:, 0] = 1e4
    sure[:, 1] = np.arange(12)
    labels = np.zeros(12, np.int64)
    ctx = context("uherding", hand_pool(sure, labels, 2), np.arange(8, 12), hand_student(np.eye(2)))
    sel = ask("uherding", ctx, 2)
    assert sel.fallback.endswith("coverage gains were all 0 after 0 picks; 2 of 2 drawn uniformly at random")


# ---------------------------------------------------------------- every strategy on real data

@pytest.mark.parametrize("name", BASELINES)
def test_same_seed_same_selection(trained, name):
    pool, labeled, student = trained
    ctx = lambda: context(name, pool, labeled, student)   # noqa: E731
    first = ask(name, ctx(), 10, seed=11)
    again = ask(name, ctx(), 10, seed=11)
    assert first.indices.tolist() == again.indices.tolist()
    assert first.fallback == again.fallback


def test_k_means_pp_seeds_distinct_points_and_separated_blobs():
    x = np.vstack([blob(100 * e, 3) for e in np.eye(8)[:4]])
    for seed in range(5):
        idx = kmeans_plus_plus(x, 4, np.random.default_rng(seed), CPU)
        assert sorted(set(i // 7 for i in idx)) == [0, 1, 2, 3]   # one seed in every blob


def test_invalid_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match="--power-beta must be > 0"):
        REGISTRY["powerbald"].effective({"power_beta": 0.0})
    with pytest.raises(ValueError, match="--probcover-purity must be in"):
        REGISTRY["probcover"].effective({"probcover_purity": 1.5})


# ---------------------------------------------------------------- fallbacks recorded by the loop

@pytest.mark.parametrize("strategy, params, init, expected", [
    ("probcover", {"probcover_delta": 100.0}, "random", "every point covered after 0 picks"),
    ("typiclust", {"typiclust_max_clusters": 2}, "random", "no uncovered cluster left"),
    ("powerbald", {"mc_passes": 1}, "random", "only 0 BALD scores were positive"),
    ("coreset", {}, "strategy", "initial batch: cold start: no student yet"),
])
def test_fallbacks_reach_the_run_record(tmp_synth_dir, strategy, params, init, expected):
    cfg = RunConfig(data_dir=tmp_synth_dir, dataset="syn", strategy=strategy, seed=1, rounds=2,
                    budget=10, init=init, student=FAST, params=params)
    rows = pq.read_table(run(cfg, progress=False, log=lambda _: None)).to_pylist()
    assert rows[0]["fallback"] is not None and expected in rows[0]["fallback"]
    assert len(rows[0]["queried"]) == 10
