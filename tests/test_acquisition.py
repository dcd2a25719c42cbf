"""CCMA acquisition pieces, the ablation variants and the presets (docs/method.md §6, §12)."""

from dataclasses import asdict, fields

import numpy as np
import pytest

from ccma import acquisition
from ccma.acquisition import (PRESET_TEACHERS, PRESETS, VARIANTS, CCMAParams, Clustering,
                              cluster_pool, cluster_representatives, effective_tau,
                              gaussian_similarity, greedy_coverage, max_similarity_to,
                              median_pairwise_distance, realigned_prototypes, recluster_subpool,
                              resolve_params, top_k)


def brute_force_greedy(w, sim, init, budget):
    """Textbook greedy: evaluate F(B + {j}) from scratch for every j, take the best."""
    chosen = []
    def F(B):
        m = init.copy()
        for j in B:
            m = np.maximum(m, sim[:, j])
        return float(w @ m)
    for _ in range(budget):
        base = F(chosen)
        gains = [(F(chosen + [j]) - base) if j not in chosen else -np.inf for j in range(len(w))]
        chosen.append(int(np.argmax(gains)))
    return chosen


@pytest.mark.parametrize("seed", range(8))
def test_greedy_coverage_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(6, 14))
    x = rng.normal(size=(n, 3))
    labeled = rng.normal(size=(int(rng.integers(0, 3)), 3))
    sigma = median_pairwise_distance(x)
    sim = gaussian_similarity(x, x, sigma).astype(np.float64)
    init = max_similarity_to(x, labeled, sigma).astype(np.float64)
    w = rng.random(n)
    budget = int(rng.integers(1, n))
    chosen, gains = greedy_coverage(w, sim, init, budget)
    assert chosen.tolist() == brute_force_greedy(w, sim, init, budget)
    assert np.all(np.diff(gains) <= 1e-12), "greedy gains of a submodular F never increase"
    assert len(set(chosen.tolist())) == budget


def test_gaussian_kernel_and_median():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    assert median_pairwise_distance(x) == pytest.approx(np.sqrt(18.0), rel=1e-6)  # of 1, 5, sqrt(18)
    k = gaussian_similarity(x, x, sigma=2.0)
    assert k[0, 1] == pytest.approx(np.exp(-25 / 8), rel=1e-5)
    assert np.allclose(np.diag(k), 1.0)
    assert max_similarity_to(x, np.zeros((0, 2)), 1.0).tolist() == [0, 0, 0]


def test_top_k_breaks_ties_by_position():
    assert top_k(np.array([0.1, 0.5, 0.5, 0.9]), 3).tolist() == [3, 1, 2]


def test_cluster_representatives_are_retaken_among_unlabelled():
    c = Clustering(assign=np.array([0, 0, 0, 1, 1, 2]), dist=np.array([0.3, 0.1, 0.2, 0.5, 0.4, 0.0]))
    everything = np.ones(6, bool)
    assert cluster_representatives(c, everything, 1).tolist() == [1, 4, 5]
    assert cluster_representatives(c, everything, 2).tolist() == [1, 2, 3, 4, 5]
    unl = everything.copy()
    unl[[1, 5]] = False  # cluster 2 is exhausted, cluster 0 falls back to its next nearest
    assert cluster_representatives(c, unl, 1).tolist() == [2, 4]


def test_cluster_pool_cache_is_keyed_by_pool(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    cache = tmp_path / "k.npz"
    a = cluster_pool(x, 10, seed=1, niter=10, cache=cache, pool_key="A")
    b = cluster_pool(x, 10, seed=1, niter=10, cache=None)
    assert np.array_equal(a.assign, b.assign), "k-means must be deterministic in its seed"
    # A cache made for another pool is not reused.
    y = x[::-1].copy()
    c = cluster_pool(y, 10, seed=1, niter=10, cache=cache, pool_key="B")
    assert np.array_equal(c.assign, cluster_pool(y, 10, seed=1, niter=10).assign)
    # A damaged cache (a killed copy, a full disk) is computed again and replaced.
    cache.write_bytes(cache.read_bytes()[:100])
    d = cluster_pool(y, 10, seed=1, niter=10, cache=cache, pool_key="B")
    assert np.array_equal(d.assign, c.assign)
    with np.load(cache) as data:
        assert np.array_equal(data["assign"], c.assign)


def _diff(a: CCMAParams, b: CCMAParams) -> dict:
    return {f.name: (getattr(a, f.name), getattr(b, f.name))
            for f in fields(CCMAParams) if getattr(a, f.name) != getattr(b, f.name)}


def test_variants_change_exactly_their_stage():
    v1 = resolve_params(variant="V1")
    assert v1 == CCMAParams()
    assert _diff(v1, resolve_params(variant="V2")) == {"subpool": ("kmeans", "none")}
    assert _diff(v1, resolve_params(variant="V3")) == {"subpool": ("kmeans", "random")}
    assert _diff(v1, resolve_params(variant="V4")) == {"diversity": (True, False)}
    assert _diff(v1, resolve_params(variant="V5")) == {"subpool": ("kmeans", "none"),
                                                       "diversity": (True, False)}


def test_presets_differ_exactly_as_spec_section_12():
    diff = _diff(resolve_params("paper"), resolve_params("reference-code"))
    assert diff == {
        "nonconformity": ("one_minus_p", "neg_log_p"),
        "calibrate_on": ("calibration", "subpool"),
        "empty_set": ("union", "top1"),
        "tau": (0.01, 0.03),
        "final_selection": ("coverage", "kmeans"),
        "recluster": (False, True),
        "tau_floor": (False, True),
        "realign_prototypes": (False, True),
    }
    # kappa is 20 in both; the teacher tower and per-dataset M are workflow parameters.
    assert resolve_params("reference-code").kappa == 20
    assert PRESET_TEACHERS == {"reference-code": "clip-vit-g-14"}


@pytest.mark.parametrize("tau,floor,expected", [(0.01, True, 0.07), (0.029, True, 0.07),
                                                (0.03, True, 0.03), (0.01, False, 0.01)])
def test_published_code_replaces_a_low_temperature(tau, floor, expected):
    assert effective_tau(CCMAParams(tau=tau, tau_floor=floor)) == expected


@pytest.mark.parametrize("n_unlabeled,size,target,clusters", [
    (2_800, 5_000, 933, 280),      # small pool: still clustered, capped at n/3 and n/10
    (9_000, 1_000, 1_000, 900),    # M binds the target; n/10 the clusters
    (80_000, 20_000, 16_666, 5_000),  # 50,000 sampled; n/3 and the 5,000-cluster cap bind
])
def test_reference_subpool_follows_the_published_rule(monkeypatch, n_unlabeled, size, target, clusters):
    """A stand-in k-means (cluster = position mod k, distance = position) makes the expected
    subpool computable by hand: the ceil(target / k) lowest positions of each cluster, of
    those the target lowest."""
    calls = []

    def fake_kmeans(x, k, seed, niter, max_points_per_centroid):
        calls.append((len(x), k))
        pos = np.arange(len(x))
        return None, pos % k, pos.astype(np.float32)

    monkeypatch.setattr(acquisition, "kmeans", fake_kmeans)
    n_pool = n_unlabeled + 500
    unlabeled = np.ones(n_pool, bool)
    unlabeled[np.arange(0, 1000, 2)] = False  # 500 labelled points interleaved
    teacher = np.random.default_rng(0).normal(size=(n_pool, 4)).astype(np.float32)
    got = recluster_subpool(teacher, unlabeled, size, seed=1, niter=2, rng=np.random.default_rng(5))
    n = min(n_unlabeled, 50_000)
    assert calls == [(n, clusters)]
    per_cluster = -(-target // clusters)
    assert len(got) == target and unlabeled[got].all() and np.all(np.diff(got) > 0)
    if n_unlabeled <= 50_000:
        positions = np.arange(n)
        expected = np.sort(positions[positions // clusters < per_cluster])[:target]
        assert np.array_equal(got, np.flatnonzero(unlabeled)[expected])


def test_prototypes_realigned_to_labelled_class_means():
    k = 7
    protos = np.eye(k)
    # classes 0-4 are in L; their images sit next to prototypes 3, 0, 4, 1, 6 (not their own)
    near = [3, 0, 4, 1, 6]
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(5), 3)
    images = protos[np.repeat(near, 3)] + 0.05 * rng.normal(size=(15, k))
    images[:, 5] += 0.2  # the mean of L leans to prototype 5, then 2
    images[:, 2] += 0.1
    got = realigned_prototypes(protos, images, labels)
    # classes 5 and 6, absent from L, take the free prototypes 2 and 5 by similarity to the mean
    assert np.array_equal(got, protos[[3, 0, 4, 1, 6, 5, 2]])
    # fewer than five classes in L: unchanged
    assert realigned_prototypes(protos, images[:12], labels[:12]) is protos


def test_explicit_values_override_preset_and_variant():
    p = resolve_params("reference-code", "V4", tau=0.05, diversity=True, kappa=None)
    assert p.tau == 0.05 and p.diversity and p.kappa == 20


def test_unknown_names_are_rejected():
    with pytest.raises(ValueError, match="preset"):
        resolve_params("nope")
    with pytest.raises(ValueError, match="variant"):
        resolve_params(variant="V9")
    with pytest.raises(ValueError, match="unknown CCMA parameter"):
        resolve_params(kapa=3)
    assert set(VARIANTS) == {"V1", "V2", "V3", "V4", "V5"} and set(PRESETS) == {"paper", "reference-code"}
    assert asdict(CCMAParams())["subpool_size"] == 5000
