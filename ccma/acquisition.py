"""CCMA acquisition, one round (docs/method.md §6, §12): the pure steps (subpool, candidates,
greedy coverage, k-means selection); its parameters, presets and ablation variants are
declared in ``ccma.settings`` and re-exported here."""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from .atomic import save_npz
from .geometry import CHUNK, as_tensor, kmeans, nearest_distinct, pick_device, sq_dists
# declared without torch (for the command line); imported from here by the steps' users
from .settings import (PRESET_TEACHERS, PRESETS, SUBPOOLS, VARIANTS, CCMAParams,  # noqa: F401
                      effective_tau, resolve_params)

# The published code's subpool: k-means of at most 50,000 sampled unlabelled points; the
# subpool size is capped at n / 3 and 20,000, the cluster count further at n / 10 and 5,000.
REFERENCE_RECLUSTER_SAMPLE = 50_000
REFERENCE_RECLUSTER_MAX = 20_000
REFERENCE_CLUSTERS_MAX = 5_000
# Prototype re-alignment needs this many classes in L (as the published code).
REALIGN_MIN_CLASSES = 5


# ---------------------------------------------------------------- subpool (step 1)

@dataclass(frozen=True)
class Clustering:
    """k-means of the pool's teacher embeddings: assignment and squared distance, (N_pool,)."""

    assign: np.ndarray
    dist: np.ndarray


def cluster_pool(teacher_pool: np.ndarray, n_clusters: int, seed: int, niter: int,
                 cache: Path | None = None, pool_key: str = "",
                 max_points_per_centroid: int = 256) -> Clustering:
    """Cluster once per (dataset, teacher, pool, M/r, seed); cached at ``cache`` when given.

    ``pool_key`` identifies the pool (a hash of its rows): a cache made for another pool
    is recomputed, never reused. k-means trains on a seeded sample of at most
    ``max_points_per_centroid * n_clusters`` points, then assigns every point (a
    million-point pool needs a smaller sample than the default to cluster in minutes).
    """
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as data:
                if str(data["pool_key"]) == pool_key and int(data["n_clusters"]) == n_clusters \
                        and len(data["assign"]) == len(teacher_pool):
                    return Clustering(data["assign"], data["dist"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache is only a cache: computed again below and replaced
    _, assign, dist = kmeans(teacher_pool, n_clusters, seed=seed, niter=niter,
                             max_points_per_centroid=max_points_per_centroid)
    if cache is not None:
        save_npz(cache, assign=assign, dist=dist, n_clusters=np.int64(n_clusters),
                 seed=np.int64(seed), pool_key=np.str_(pool_key))
    return Clustering(assign, dist)


def clusters_dir(data_dir, dataset: str, teacher_backbone: str) -> Path:
    """Where the subpool clusterings of one dataset and teacher are cached."""
    return Path(data_dir) / "clusters" / dataset / teacher_backbone


def subpool_clusters(subpool_size: int, per_cluster: int) -> int:
    """M / r: the number of k-means clusters of the subpool."""
    return max(1, subpool_size // per_cluster)


def subpool_cache_name(n_clusters: int, niter: int, seed: int) -> str:
    return f"kmeans-k{n_clusters}-it{niter}-seed{seed}.npz"


def cluster_representatives(clustering: Clustering, unlabeled: np.ndarray, per_cluster: int) -> np.ndarray:
    """From each cluster, the ``per_cluster`` still-unlabelled points nearest its centroid.

    unlabeled: (N_pool,) bool. Returns sorted pool positions.
    """
    candidates = np.flatnonzero(unlabeled)
    order = candidates[np.lexsort((clustering.dist[candidates], clustering.assign[candidates]))]
    groups = clustering.assign[order]
    first = np.r_[True, groups[1:] != groups[:-1]]
    start_of_group = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    rank = np.arange(len(order)) - start_of_group
    return np.sort(order[rank < per_cluster])


def recluster_subpool(teacher_pool: np.ndarray, unlabeled: np.ndarray, size: int, seed: int,
                      niter: int, rng: np.random.Generator) -> np.ndarray:
    """The published code's subpool, re-clustered every round and also for small pools.

    Of at most 50,000 random unlabelled points (n of them), a target of
    min(M, n / 3, 20,000) points is taken: k-means of the L2-normalised teacher embeddings
    into min(target, n / 10, 5,000) clusters, the ceil(target / clusters) points nearest each
    centre; of those the target count with the lowest pool positions is kept (the published
    code sorts its picks before trimming), topped up at random if clusters came out empty.
    teacher_pool: (N_pool, d_T); unlabeled: (N_pool,) bool. Returns sorted pool positions.
    """
    pool_idx = np.flatnonzero(unlabeled)
    if len(pool_idx) > REFERENCE_RECLUSTER_SAMPLE:
        pool_idx = np.sort(rng.choice(pool_idx, REFERENCE_RECLUSTER_SAMPLE, replace=False))
    n = len(pool_idx)
    target = max(1, min(size, n // 3, REFERENCE_RECLUSTER_MAX))
    n_clusters = max(1, min(target, n // 10, REFERENCE_CLUSTERS_MAX))
    x = teacher_pool[pool_idx].astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    _, assign, dist = kmeans(x, n_clusters, seed=seed, niter=niter,
                             max_points_per_centroid=max(512, 2 * (n // n_clusters)))
    per_cluster = math.ceil(target / n_clusters)
    reps = cluster_representatives(Clustering(assign, dist), np.ones(n, bool), per_cluster)[:target]
    if len(reps) < target:
        rest = np.setdiff1d(np.arange(n), reps)
        reps = np.sort(np.concatenate([reps, rng.choice(rest, target - len(reps), replace=False)]))
    return pool_idx[reps]


def realigned_prototypes(prototypes: np.ndarray, labeled_teacher: np.ndarray,
                         labeled_labels: np.ndarray) -> np.ndarray:
    """The published code's per-round re-alignment of text prototypes to label indices.

    The L2-normalised mean teacher embedding of each class present in L is matched to a
    prototype by the assignment maximising total cosine similarity (Hungarian); classes absent
    from L take the remaining prototypes, in class order, by decreasing similarity to the
    mean of all labelled embeddings. Fewer than 5 classes in L: prototypes unchanged.
    prototypes: (K, d_T); labeled_teacher: (n_L, d_T); labeled_labels: (n_L,).
    Returns the re-ordered prototypes (K, d_T): row c is the prototype used for class c.
    """
    present = np.unique(labeled_labels)
    if len(present) < REALIGN_MIN_CLASSES:
        return prototypes
    k = len(prototypes)
    x = _unit(np.asarray(labeled_teacher, dtype=np.float64))
    protos = _unit(np.asarray(prototypes, dtype=np.float64))
    means = _unit(np.stack([x[labeled_labels == c].mean(axis=0) for c in present]))
    rows, cols = linear_sum_assignment(-(means @ protos.T))
    perm = np.full(k, -1, dtype=np.int64)
    perm[present[rows]] = cols
    free = np.setdiff1d(np.arange(k), cols)
    by_similarity = free[np.argsort(-(protos[free] @ _unit(x.mean(axis=0))), kind="stable")]
    perm[perm < 0] = by_similarity
    return np.asarray(prototypes)[perm]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------- candidates and batch (steps 3-4)

def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores, highest first; ties broken by position."""
    k = min(k, len(scores))
    order = np.argsort(-scores, kind="stable")
    return order[:k]


def median_distance(sq: torch.Tensor) -> float:
    """Median Euclidean distance over distinct pairs, from the squared distances (n, n) of n
    rows to themselves (upper triangle read); 1.0 when there is no pair.

    The lower median (as torch.median) is found by selection, O(n^2) without a sort. The
    square roots are taken before selecting: torch's vectorised sqrt is not always correctly
    rounded, so sqrt(median of squares) can differ from it in the last bit.
    """
    n = len(sq)
    if n < 2:
        return 1.0
    iu = torch.triu_indices(n, n, offset=1, device=sq.device)
    pairs = sq[iu[0], iu[1]].sqrt_().cpu().numpy()
    rank = (len(pairs) - 1) // 2
    return float(np.partition(pairs, rank)[rank])


def gaussian_kernel_(sq: torch.Tensor, sigma: float) -> torch.Tensor:
    """exp(-sq / (2 sigma^2)) computed in place on the squared distances ``sq``; returns it."""
    return sq.neg_().div_(2.0 * sigma * sigma).exp_()


def median_pairwise_distance(x: np.ndarray, device: torch.device | None = None) -> float:
    """Median Euclidean distance over distinct pairs of rows of x (n, d)."""
    t = as_tensor(x, device or pick_device())
    return median_distance(sq_dists(t, t))


def gaussian_similarity(x: np.ndarray, y: np.ndarray, sigma: float,
                        device: torch.device | None = None) -> np.ndarray:
    """k(x, y) = exp(-||x - y||^2 / (2 sigma^2)), (n, m) float32 (n x m must fit in memory)."""
    device = device or pick_device()
    return gaussian_kernel_(sq_dists(as_tensor(x, device), as_tensor(y, device)), sigma).cpu().numpy()


def max_similarity_to(x: np.ndarray, refs: np.ndarray, sigma: float,
                      device: torch.device | None = None) -> np.ndarray:
    """max over rows r of refs of k(x_i, r), (n,) float32; 0 when refs is empty. Chunked."""
    out = np.zeros(len(x), dtype=np.float32)
    for s in range(0, len(refs), CHUNK):
        np.maximum(out, gaussian_similarity(x, refs[s:s + CHUNK], sigma, device).max(axis=1), out=out)
    return out


def greedy_coverage(weights: np.ndarray, similarity: np.ndarray, initial_max: np.ndarray,
                    budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of F(B) = sum_x u(x) max_{x' in B ∪ L} k(x, x').

    weights: u (C,); similarity: k among candidates (C, C), row = covered point x,
    column = chosen candidate; initial_max: max_{l in L} k(x, l) (C,).
    Gains g_j = sum_x u_x relu(k(x, j) - m_x) are kept up to date incrementally: after a
    pick only the rows whose running max m_x grew change, so each step touches those rows.
    Returns the chosen positions in pick order and their gains (non-increasing).
    """
    budget = min(budget, len(weights))
    w = np.asarray(weights, dtype=np.float64)
    sim = np.asarray(similarity, dtype=np.float64)
    m = np.asarray(initial_max, dtype=np.float64).copy()
    gains = sim - m[:, None]
    gains = w @ np.maximum(gains, 0.0, out=gains)
    chosen = np.empty(budget, dtype=np.int64)
    picked_gains = np.empty(budget, dtype=np.float64)
    available = np.ones(len(w), dtype=bool)
    for step in range(budget):
        j = int(np.argmax(np.where(available, gains, -np.inf)))
        chosen[step], picked_gains[step] = j, gains[j]
        available[j] = False
        grew = np.flatnonzero(sim[:, j] > m)
        if grew.size:
            rows = sim[grew]
            old = np.maximum(rows - m[grew, None], 0.0)
            m[grew] = sim[grew, j]
            new = np.maximum(rows - m[grew, None], 0.0)
            gains -= w[grew] @ (old - new)
    return chosen, picked_gains


def kmeans_selection(x: np.ndarray, budget: int, seed: int, niter: int) -> np.ndarray:
    """The reference code's final step: k-means with b clusters on the L2-normalised
    candidates, the (distinct) candidate nearest each centre. x: (C, d); returns positions."""
    budget = min(budget, len(x))
    x = np.asarray(x, dtype=np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    centroids, _, _ = kmeans(x, budget, seed=seed, niter=niter)
    return nearest_distinct(x, centroids)
