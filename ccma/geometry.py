"""Distances, nearest neighbours and k-means in chunks, on the student's device.

Nothing here materialises an N x N matrix: pairwise work is done ``CHUNK`` rows at a time.
Results do not depend on the number of CPU threads (see ``MKL_CBWR`` and ``kmeans``).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import torch


CHUNK = 4096
# faiss computes squared distances pairwise (sum of squared differences, one query per
# thread) for fewer than this many query values (rows x d), above it as |x|^2 + |y|^2 - 2 x.y
# through a threaded BLAS product whose roundings change with the thread count.
FAISS_PAIRWISE_LIMIT = 2**31 - 1


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_tensor(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x, dtype=np.float32), device=device)


def sq_dists(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor | None = None,
             b_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances (n, m) between rows of a (n, d) and b (m, d), clamped >= 0.

    Computed as (|a|^2 - 2 a.b) + |b|^2 in place on the product: the same roundings as the
    out-of-place expression, without two more (n, m) temporaries. ``a_sq`` (n,) and ``b_sq``
    (m,): the rows' squared norms when the caller already has them (a blocked loop over one
    pool computes them once, with the same roundings).
    """
    a_sq = (a * a).sum(1) if a_sq is None else a_sq
    b_sq = (a_sq if b is a else (b * b).sum(1)) if b_sq is None else b_sq
    d = (2.0 * a) @ b.T
    return d.neg_().add_(a_sq[:, None]).add_(b_sq[None, :]).clamp_min_(0.0)


def nearest(x: np.ndarray, refs: np.ndarray, device: torch.device | None = None,
            chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """For each row of x (n, d): index of and squared distance to the nearest row of refs (m, d)."""
    device = device or pick_device()
    r = as_tensor(refs, device)
    idx = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), chunk):
        d = sq_dists(as_tensor(x[s:s + chunk], device), r)
        best = d.min(dim=1)
        idx[s:s + chunk] = best.indices.cpu().numpy()
        dist[s:s + chunk] = best.values.cpu().numpy()
    return idx, dist


@contextmanager
def _faiss_pairwise_distances():
    """Inside the block every faiss search below ``FAISS_PAIRWISE_LIMIT`` values is pairwise."""
    import faiss

    saved = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = FAISS_PAIRWISE_LIMIT
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_threshold = saved


def kmeans(x: np.ndarray, k: int, seed: int, niter: int = 20,
           max_points_per_centroid: int = 256,
           init: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lloyd's k-means (faiss) seeded by ``seed``.

    x: (n, d). Returns centroids (k, d) float32, assignment (n,) int64 and squared distance
    of each point to its centroid (n,) float32. faiss trains on at most
    ``max_points_per_centroid * k`` points (a seeded sample), then every point is assigned.
    ``init`` (k, d): starting centroids (e.g. ``x[kmeans_plus_plus(...)]``); faiss's own
    start (k random points) when None. Every distance, in training and in the assignment, is
    a pairwise sum of squared differences, so the result does not depend on the number of
    threads; the training sample is capped to stay within ``FAISS_PAIRWISE_LIMIT`` values.
    """
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = int(min(k, n))
    per_centroid = min(max_points_per_centroid, FAISS_PAIRWISE_LIMIT // (k * d))
    km = faiss.Kmeans(d, k, niter=niter, seed=int(seed) % (2**31), verbose=False,
                      max_points_per_centroid=per_centroid, min_points_per_centroid=1)
    assign = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    rows = FAISS_PAIRWISE_LIMIT // d
    with _faiss_pairwise_distances():
        km.train(x, init_centroids=None if init is None else np.ascontiguousarray(init, dtype=np.float32))
        for s in range(0, n, rows):
            block_dist, block_assign = km.index.search(x[s:s + rows], 1)
            assign[s:s + rows], dist[s:s + rows] = block_assign[:, 0], block_dist[:, 0]
    return km.centroids.copy(), assign, dist


def d2_sampling(n: int, k: int, sq_dist_to, first: int,
                rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """k-means++'s D^2 sampling of min(k, n) distinct indices out of n points.

    ``sq_dist_to(c)`` gives the squared distances (n,) (float64 tensor) of every point to point
    c. Starting from ``first``, each next index is drawn with probability proportional to the
    squared distance to its nearest chosen one; if those are all 0, uniformly among the
    unchosen. Returns the indices in pick order and how many were drawn by D^2 (with ``first``).
    """
    chosen, by_d2 = [int(first)], 1
    d2 = sq_dist_to(chosen[0])
    while len(chosen) < min(k, n):
        d2[chosen] = 0.0  # chosen points are never drawn again, whatever the round-off
        weights = d2.cpu().numpy()
        total = weights.sum()
        if total > 0:
            nxt = int(rng.choice(n, p=weights / total))
            by_d2 += 1
        else:
            nxt = int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        chosen.append(nxt)
        d2 = torch.minimum(d2, sq_dist_to(nxt))
    return np.asarray(chosen, dtype=np.int64), by_d2


def kmeans_plus_plus(x: np.ndarray, k: int, rng: np.random.Generator,
                     device: torch.device | None = None) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): min(k, n) distinct row indices of x (n, d),
    the first uniform, then D^2 sampling; one (n, d) matrix-vector product per centre."""
    t = as_tensor(x, device or pick_device())
    sq = (t * t).sum(1)

    def sq_dist_to(c: int) -> torch.Tensor:
        return (sq + sq[c] - 2.0 * (t @ t[c])).clamp_min_(0.0).double()

    return d2_sampling(len(x), k, sq_dist_to, int(rng.integers(len(x))), rng)[0]


def nearest_distinct(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """For each centre in order, the nearest point not already taken; (len(centres),) indices.

    points: (n, d), centres: (k, d) with k <= n.
    """
    d = sq_dists(torch.as_tensor(centres, dtype=torch.float32),
                 torch.as_tensor(points, dtype=torch.float32)).numpy()
    order = np.argsort(d, axis=1, kind="stable")
    taken = np.zeros(len(points), dtype=bool)
    chosen = np.empty(len(centres), dtype=np.int64)
    for i, row in enumerate(order):  # k iterations; each usually stops at its first entry
        j = row[np.argmax(~taken[row])]
        taken[j] = True
        chosen[i] = j
    return chosen
