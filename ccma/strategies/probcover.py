"""ProbCover (Yehuda et al., NeurIPS 2022), as in the authors' ``prob_cover.py``.

On the L2-normalised backbone features h(x) of the whole pool, x covers y when
||x - y|| < delta (every point covers itself). Greedy max coverage: points covered by the
labelled set are removed, then b times the unlabelled point covering the most
still-uncovered points is queried (ties: lowest pool position) and what it covers is removed.

delta (``--probcover-delta``, or estimated each round when unset): the largest radius whose
ball purity is at least ``probcover_purity`` (0.95). Pseudo-labels come from k-means with
K clusters (k-means++ start, faiss; seeded by the run seed, so every round finds the same
delta). A ball
B_delta(x) is pure when every point in it shares x's pseudo-label, i.e. when delta <= r(x),
the distance from x to its nearest point of another cluster; so purity(delta) =
mean_x [r(x) >= delta] and the largest delta with purity >= alpha is exactly the
(N - ceil(alpha N))-th smallest r(x) (0-based): the limit a bisection would approach.

The delta-ball graph is built in blocks of rows against the rows after them and mirrored,
so it is exactly symmetric and never dense; it is kept as a CSR matrix of int32 indices.
delta and the graph depend only on the pool's features, the seed and the options, never on
the labelled set, so with a cache folder they are computed once per run (the O(N^2 d) part)
and every later round only runs the greedy, which removes what the labelled set covers.

When every point is covered before b are chosen, the published greedy has nothing left to
gain; the rest is drawn uniformly at random and recorded as a fallback.
"""

from __future__ import annotations

import hashlib
import math
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from ..atomic import save_npz
from ..geometry import as_tensor, sq_dists
from ._common import fill_at_random, kmeans_pp, l2_normalise, rows_per_block
from .base import QueryContext, Selection, register



def impure_radius_sq(x: np.ndarray, pseudo: np.ndarray, device: torch.device) -> np.ndarray:
    """r(x)^2: squared distance from each row of x (n, d) to the nearest row with another
    pseudo-label ``pseudo`` (n,); inf when all rows share one label. (n,) float32."""
    xt = as_tensor(x, device)
    pt = torch.as_tensor(pseudo, device=device)
    out = np.empty(len(x), dtype=np.float32)
    step = rows_per_block(len(x))
    for s in range(0, len(x), step):
        d = sq_dists(xt[s:s + step], xt)
        d[pt[s:s + step, None] == pt[None, :]] = float("inf")
        out[s:s + step] = d.min(1).values.cpu().numpy()
    return out


def purity_delta_sq(r_sq: np.ndarray, purity: float) -> float:
    """The largest delta^2 with mean(r^2 >= delta^2) >= purity, from r(x)^2 (n,)."""
    n = len(r_sq)
    return float(np.sort(r_sq)[n - math.ceil(purity * n)])


def estimate_delta_sq(x: np.ndarray, n_clusters: int, purity: float, seed: int,
                      device: torch.device) -> float:
    """delta^2 for ``purity`` with k-means pseudo-labels (k = n_clusters) of x (n, d)."""
    _, pseudo, _ = kmeans_pp(x, n_clusters, np.random.default_rng(seed), device)
    return purity_delta_sq(impure_radius_sq(x, pseudo, device), purity)


def ball_graph(x: np.ndarray, delta_sq: float, device: torch.device) -> sp.csr_array:
    """Symmetric (n, n) CSR adjacency with x_i - x_j an edge iff ||x_i - x_j||^2 < delta^2,
    self-loops included. Each pair is tested once (row block against later rows)."""
    n = len(x)
    xt = as_tensor(x, device)
    rows, cols = [np.arange(n, dtype=np.int32)], [np.arange(n, dtype=np.int32)]
    step = rows_per_block(n)
    for s in range(0, n, step):
        d = sq_dists(xt[s:s + step], xt[s:])
        # keep j > i only: the strict upper triangle of this block
        upper = torch.ones_like(d, dtype=torch.bool).triu_(1)
        r, c = torch.nonzero((d < delta_sq) & upper, as_tuple=True)
        r = (r + s).to(torch.int32).cpu().numpy()
        c = (c + s).to(torch.int32).cpu().numpy()
        rows += [r, c]
        cols += [c, r]
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = sp.csr_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    graph.indices = graph.indices.astype(np.int32, copy=False)
    return graph


def greedy_cover(graph: sp.csr_array, labeled: np.ndarray, budget: int) -> np.ndarray:
    """ProbCover's greedy on a symmetric ball graph: up to ``budget`` unlabelled positions in
    pick order; fewer when everything gets covered first."""
    n = graph.shape[0]
    covered = np.zeros(n, dtype=bool)
    if len(labeled):
        covered[graph[labeled].indices] = True
    # degree = number of still-uncovered neighbours (every row holds its self-loop)
    degree = np.add.reduceat((~covered[graph.indices]).astype(np.int64), graph.indptr[:-1])
    blocked = np.zeros(n, dtype=bool)
    blocked[labeled] = True
    picked = []
    for _ in range(budget):
        j = int(np.argmax(np.where(blocked, -1, degree)))
        if blocked[j] or degree[j] <= 0:
            break
        picked.append(j)
        blocked[j] = True
        nbrs = graph.indices[graph.indptr[j]:graph.indptr[j + 1]]
        new = nbrs[~covered[nbrs]]
        covered[new] = True
        # a newly covered y no longer counts for any of its neighbours (the graph is symmetric)
        degree -= np.bincount(graph[new].indices, minlength=n)
    return np.asarray(picked, dtype=np.int64)


def _graph(x: np.ndarray, ctx: QueryContext) -> tuple[float, sp.csr_array]:
    p = ctx.params
    if p["probcover_delta"] is None:
        delta_sq = estimate_delta_sq(x, ctx.data.n_classes, p["probcover_purity"], ctx.seed,
                                     ctx.device)
    else:
        delta_sq = float(p["probcover_delta"]) ** 2
    return delta_sq, ball_graph(x, delta_sq, ctx.device)


def cache_name(ctx: QueryContext) -> str:
    """The cache file of this pool's delta and graph: one per seed and delta option."""
    p = ctx.params
    how = (f"delta{float(p['probcover_delta']):.17g}" if p["probcover_delta"] is not None
           else f"purity{float(p['probcover_purity']):.17g}-k{ctx.data.n_classes}")
    return f"probcover-{how}-seed{ctx.seed}.npz"


def pool_graph(ctx: QueryContext) -> tuple[float, sp.csr_array]:
    """delta^2 and the delta-ball graph of the L2-normalised pool features; read from (or
    written to) ``ctx.cache_dir`` when it is set. A cache of other features is recomputed
    (the folder is shared by every student backbone of a dataset, so the features are hashed)."""
    x = l2_normalise(ctx.data.student)
    features = hashlib.blake2b(np.ascontiguousarray(ctx.data.student).data, digest_size=16).hexdigest()
    cache = None if ctx.cache_dir is None else Path(ctx.cache_dir) / cache_name(ctx)
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as d:
                if str(d["features"]) == features and str(d["pool_key"]) == ctx.data.pool_key:
                    graph = sp.csr_array((np.ones(len(d["indices"]), dtype=np.int8), d["indices"],
                                          d["indptr"]), shape=(len(x), len(x)))
                    return float(d["delta_sq"]), graph
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache is only a cache: computed again below and replaced
    delta_sq, graph = _graph(x, ctx)
    if cache is not None:
        save_npz(cache, indices=graph.indices, indptr=graph.indptr, delta_sq=np.float64(delta_sq),
                 features=np.str_(features), pool_key=np.str_(ctx.data.pool_key))
    return delta_sq, graph


@register("probcover")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """ProbCover: greedy max coverage of delta-balls, delta from pseudo-label purity."""
    delta_sq, graph = pool_graph(ctx)
    picked = greedy_cover(graph, ctx.labeled, budget)
    picked, fallback = fill_at_random(picked, ctx, budget, rng,
                                      f"every point covered after {len(picked)} picks")
    return Selection(picked, fallback, {"probcover_delta": math.sqrt(delta_sq),
                                        "probcover_edges": int(graph.nnz)})
