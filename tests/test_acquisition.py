"""CCMA acquisition pieces (SPEC 6), the ablation variants and the presets (SPEC 12)."""

from dataclasses import asdict, fields

import numpy as np
import pytest

from ccma.acquisition import (PRESETS, VARIANTS, CCMAParams, Clustering, cluster_pool,
                              cluster_representatives, gaussian_similarity, greedy_coverage,
                              max_similarity_to, median_pairwise_distance, resolve_params, top_k)


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
    }
    # kappa is 20 in both; the teacher tower and per-dataset M are workflow parameters.
    assert resolve_params("reference-code").kappa == 20


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
