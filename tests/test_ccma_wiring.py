"""CCMA as a whole against a plain re-computation written here, on a tiny pool.

The pool is built so that every wiring choice changes the batch: teacher and student spaces
disagree, the labelled set sits next to some high-scoring candidates, scores are far from
uniform, some conformal sets come out empty. Each test first checks that the wrong wirings
of its own reference (uniform weights, the other modality, no labelled set, the lowest
scores, no top-1 fill, the first b candidates) give another batch, so a passing test means
the implementation is wired the one right way.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from ccma.geometry import kmeans
from ccma.strategies import REGISTRY, QueryContext
from ccma.strategies.base import PoolData
from ccma.strategies.ccma import pool_clustering
from ccma.student import Student, StudentConfig, StudentNet

CPU = torch.device("cpu")
K, N, D_T, D_S = 5, 70, 4, 6
BUDGET, KAPPA = 3, 4.0
QUERY_SEED = 11
REFERENCE_SET_SIZE = 1.0  # small sets calibrated on the subpool: some come out empty


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def world():
    """Pool, calibration split, labelled set and a student, all drawn once."""
    rng = np.random.default_rng(2049)
    labels = rng.integers(0, K, N + 15)
    class_t = _unit(rng.normal(size=(K, D_T)))
    class_s = _unit(rng.normal(size=(K, D_S)))
    teacher = _unit(class_t[labels] + 0.9 * rng.normal(size=(N + 15, D_T))).astype(np.float32)
    student = (class_s[labels] + 0.8 * rng.normal(size=(N + 15, D_S))).astype(np.float32)
    # the stored prototypes are a shuffled copy of the class directions: only re-alignment
    # to the labelled class means puts them back in label order
    protos = _unit(class_t[[2, 0, 3, 4, 1]] + 0.2 * rng.normal(size=(K, D_T))).astype(np.float32)
    pool = PoolData(student=student[:N], teacher=teacher[:N], labels=labels[:N], rows=np.arange(N),
                    cal_student=student[N:], cal_teacher=teacher[N:], cal_labels=labels[N:],
                    prototypes=protos, n_classes=K)
    net = StudentNet(D_S, K, 0.0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        net.norm.running_mean.copy_(torch.as_tensor(rng.normal(size=D_S) * 0.3, dtype=torch.float32))
        net.norm.running_var.copy_(torch.as_tensor(rng.uniform(0.5, 2.0, D_S), dtype=torch.float32))
        net.head.weight.copy_(torch.as_tensor(2.0 * class_s, dtype=torch.float32))
        net.head.bias.zero_()
    net.eval()
    model = Student(net=net, device=CPU, epochs=0, train_loss=0.0, config=StudentConfig(dropout=0.0, device="cpu"))
    # one labelled point of each class, plus two more
    labeled = np.array([int(np.flatnonzero(labels[:N] == c)[0]) for c in range(K)] + [40, 41])
    return pool, model, labeled


def query(world, **params):
    pool, model, labeled = world
    ctx = QueryContext(data=pool, labeled=labeled, student=model,
                       params=REGISTRY["ccma"].effective({"tau": 0.5, "k_teacher": 2.0, "k_student": 2.0,
                                                          "kappa": KAPPA, **params}),
                       seed=1, round=1, device=CPU)
    sel = REGISTRY["ccma"].query(ctx, BUDGET, np.random.default_rng(QUERY_SEED))
    return ctx, sel.indices


# ---------------------------------------------------------------- the plain reference

def log_softmax_rows(z):
    return z - logsumexp(z, axis=1, keepdims=True)


def threshold(log_probs, target):
    """The ceil(target * n)-th smallest -log p: the smallest giving mean set size >= target."""
    return np.sort(-log_probs.ravel())[math.ceil(target * len(log_probs)) - 1]


def sets_of(log_probs, t, top1_fill):
    sets = -log_probs <= t
    if top1_fill:
        for i in np.flatnonzero(~sets.any(axis=1)):
            sets[i, np.argmax(log_probs[i])] = True
    return sets


def score_rows(lpt, lps, st, ss):
    u = np.empty(len(lpt))
    for i in range(len(lpt)):
        support = st[i] | ss[i]
        if not support.any():
            support[[np.argmax(lpt[i]), np.argmax(lps[i])]] = True
        pt = np.exp(lpt[i][support]) / np.exp(lpt[i][support]).sum()
        ps = np.exp(lps[i][support]) / np.exp(lps[i][support]).sum()
        m = (pt + ps) / 2
        js = 0.5 * sum(a * math.log(a / c) for a, c in zip(pt, m) if a > 0) \
            + 0.5 * sum(a * math.log(a / c) for a, c in zip(ps, m) if a > 0)
        c_t, c_s = np.exp(lpt[i]).max(), np.exp(lps[i]).max()
        w = c_t / (c_t + c_s + 1e-8)
        h = -sum(p * math.log(p) for p in np.exp(lps[i]) if p > 0)
        u[i] = w * js + (1 - w) * h
    return u


def candidates_by(u, n):
    return sorted(range(len(u)), key=lambda i: (-u[i], i))[:n]


def greedy_batch(weights, x, x_labeled, budget):
    """argmax F(B) = sum_x w(x) max_{x' in B ∪ L} k(x, x') greedily, F evaluated from scratch."""
    pairs = [np.linalg.norm(x[i] - x[j]) for i in range(len(x)) for j in range(i + 1, len(x))]
    sigma = sorted(pairs)[(len(pairs) - 1) // 2]

    def kernel(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma * sigma))

    def coverage(batch):
        refs = [x[j] for j in batch] + list(x_labeled)
        return sum(w * max([kernel(x[i], r) for r in refs], default=0.0) for i, w in enumerate(weights))

    batch = []
    for _ in range(budget):
        gains = [coverage(batch + [j]) if j not in batch else -np.inf for j in range(len(x))]
        batch.append(int(np.argmax(gains)))
    return batch


def reference_scores(world, subpool, protos=None, tau=0.5, on_subpool=False, top1_fill=False, target=2.0):
    """u on the subpool, plus the teacher and student log-posteriors."""
    pool, model, _ = world
    protos = pool.prototypes if protos is None else protos
    lpt = log_softmax_rows(pool.teacher[subpool].astype(np.float64) @ protos.T.astype(np.float64) / tau)
    lpt_cal = log_softmax_rows(pool.cal_teacher.astype(np.float64) @ protos.T.astype(np.float64) / tau)
    lps, lps_cal = model.log_proba(pool.student[subpool]), model.log_proba(pool.cal_student)
    t_t = threshold(lpt if on_subpool else lpt_cal, target)
    t_s = threshold(lps if on_subpool else lps_cal, target)
    return score_rows(lpt, lps, sets_of(lpt, t_t, top1_fill), sets_of(lps, t_s, top1_fill))


def paper_batch(world, subpool, space="teacher", weights="u", labeled=True, lowest=False, diversity=True,
                on_subpool=False):
    """The paper preset's batch, with switches that re-create each wiring bug."""
    pool, _, labeled_idx = world
    u = reference_scores(world, subpool, on_subpool=on_subpool)
    cands = candidates_by(-u if lowest else u, int(KAPPA * BUDGET))
    if not diversity:
        return sorted(subpool[cands[:BUDGET]])
    feats = pool.teacher if space == "teacher" else pool.student
    w = u[cands] if weights == "u" else np.ones(len(cands))
    x_l = feats[labeled_idx] if labeled else np.zeros((0, feats.shape[1]))
    chosen = greedy_batch(w, feats[subpool[cands]].astype(np.float64), x_l.astype(np.float64), BUDGET)
    return sorted(subpool[[cands[j] for j in chosen]])


def unlabeled(world):
    return np.setdiff1d(np.arange(N), world[2])


# ---------------------------------------------------------------- the paper preset, V1-V5

def kmeans_subpool(world, ctx, size):
    """V1/V4: per cluster of the cached k-means, the unlabelled point nearest the centre."""
    clustering = pool_clustering(ctx)
    free = set(unlabeled(world).tolist())
    best = {}
    for i in range(N):
        c = int(clustering.assign[i])
        if i in free and (c not in best or clustering.dist[i] < clustering.dist[best[c]]):
            best[c] = i
    assert len(best) <= size
    return np.array(sorted(best.values()))


def test_v2_equals_the_reference_and_each_wiring_bug_changes_it(world):
    subpool = unlabeled(world)
    expected = paper_batch(world, subpool)
    for bug in ({"weights": "uniform"}, {"space": "student"}, {"labeled": False}, {"lowest": True},
                {"on_subpool": True}):
        assert paper_batch(world, subpool, **bug) != expected, f"the fixture cannot see {bug}"
    _, got = query(world, variant="V2")
    assert sorted(got) == expected


def test_kernel_in_student_space(world):
    subpool = unlabeled(world)
    _, got = query(world, variant="V2", kernel_space="student")
    assert sorted(got) == paper_batch(world, subpool, space="student")


def test_v5_takes_the_top_scores(world):
    subpool = unlabeled(world)
    expected = paper_batch(world, subpool, diversity=False)
    assert expected != paper_batch(world, subpool)
    _, got = query(world, variant="V5")
    assert sorted(got) == expected


@pytest.mark.parametrize("variant", ["V1", "V4"])
def test_kmeans_subpool_variants(world, variant):
    ctx, got = query(world, variant=variant, subpool_size=20)
    subpool = kmeans_subpool(world, ctx, 20)
    assert len(subpool) < len(unlabeled(world))
    expected = paper_batch(world, subpool, diversity=variant == "V1")
    assert sorted(got) == expected


def test_v3_random_subpool(world):
    draw = np.random.default_rng(QUERY_SEED)
    subpool = np.sort(draw.choice(unlabeled(world), 20, replace=False))
    _, got = query(world, variant="V3", subpool_size=20)
    assert sorted(got) == paper_batch(world, subpool)


def test_the_two_nonconformity_units_select_alike(world):
    ctx_a, a = query(world, variant="V2", nonconformity="one_minus_p")
    _, b = query(world, variant="V2", nonconformity="neg_log_p")
    assert np.array_equal(a, b)


# ---------------------------------------------------------------- the reference-code preset

def realigned_by_brute_force(world):
    """The permutation of prototypes maximising the summed cosine to the labelled class
    means (every class is in L here), found by trying all 5! of them."""
    pool, _, labeled = world
    x = _unit(pool.teacher[labeled].astype(np.float64))
    y = pool.labels[labeled]
    means = _unit(np.stack([x[y == c].mean(axis=0) for c in range(K)]))
    protos = _unit(pool.prototypes.astype(np.float64))
    best = max(itertools.permutations(range(K)),
               key=lambda perm: sum(means[c] @ protos[perm[c]] for c in range(K)))
    return pool.prototypes[list(best)]


def reference_code_batch(world, subpool, protos, tau, top1_fill=True, first_b=False):
    u = reference_scores(world, subpool, protos=protos, tau=tau, on_subpool=True, top1_fill=top1_fill,
                         target=REFERENCE_SET_SIZE)
    cands = candidates_by(u, int(KAPPA * BUDGET))
    if first_b:
        return sorted(subpool[cands[:BUDGET]])
    x = _unit(world[0].teacher[subpool[cands]].astype(np.float32))
    seed = int(np.random.default_rng(QUERY_SEED).integers(2**31))
    centres, _, _ = kmeans(x, BUDGET, seed=seed, niter=20)
    taken = []
    for c in centres:  # each centre takes its nearest candidate not taken yet
        order = np.argsort(((x - c) ** 2).sum(axis=1), kind="stable")
        taken.append(next(int(j) for j in order if j not in taken))
    return sorted(subpool[[cands[j] for j in taken]])


def test_reference_code_preset_equals_the_reference(world):
    subpool = unlabeled(world)
    protos = realigned_by_brute_force(world)
    assert not np.array_equal(protos, world[0].prototypes)
    expected = reference_code_batch(world, subpool, protos, tau=0.07)
    for bug in ({"top1_fill": False}, {"first_b": True}):
        assert reference_code_batch(world, subpool, protos, 0.07, **bug) != expected, bug
    assert reference_code_batch(world, subpool, world[0].prototypes, 0.07) != expected, "no re-alignment"
    assert reference_code_batch(world, subpool, protos, 0.01) != expected, "tau floor ignored"
    # tau 0.01 is below the published code's floor of 0.03: it runs at 0.07
    _, got = query(world, preset="reference-code", variant="V2", tau=0.01,
                   k_teacher=REFERENCE_SET_SIZE, k_student=REFERENCE_SET_SIZE)
    assert sorted(got) == expected


# ---------------------------------------------------------------- the teacher each preset reads

def test_reference_code_preset_reads_the_authors_teacher(synth_dir, capsys):
    from ccma.cli import main

    argv = ["run", "--data-dir", str(synth_dir), "--dataset", "syn", "--strategy", "ccma", "--seed", "1"]
    # the synthetic data have only the default teacher's store: the preset looks for ViT-g/14
    assert main([*argv, "--preset", "reference-code"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "clip-vit-g-14" in err, err
    assert not (synth_dir / "runs").exists()
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "clip-vit-g-14 with --preset reference-code" in " ".join(capsys.readouterr().out.split())


def test_reference_code_subpool_is_clustered_even_when_small(world):
    """|U| = 63 <= M = 5,000: the paper preset scores all of U, the published code still
    clusters, into a subpool of min(M, n/3, 20,000) = 21 points."""
    from ccma.strategies.ccma import _ccma_params, score_round

    for preset, size in (("paper", 63), ("reference-code", 21)):
        ctx, _ = query(world, preset=preset)
        scored = score_round(ctx, _ccma_params(ctx), np.random.default_rng(0))
        assert len(scored.subpool) == size, preset
        assert np.isin(scored.subpool, unlabeled(world)).all()
