"""TypiClust (Hacohen et al., ICML 2022), as in the authors' ``typiclust.py``.

k-means (k-means++ start as in the authors' sklearn call, then faiss Lloyd iterations,
seeded from the round's generator) clusters the backbone features h(x) of the whole pool
(the self-supervised representation TypiClust is defined on) into
min(|L| + b, ``typiclust_max_clusters``) clusters, anew every round. Clusters with at most
``typiclust_min_size`` points are skipped. The rest are visited in a fixed order, fewest
labelled points first, then largest first (then by cluster id), cycling when b exceeds
their number; each visit queries the most typical still-unlabelled point of the cluster:

    typicality(x) = 1 / (mean squared Euclidean distance to its k nearest neighbours + 1e-5),

k = min(``typiclust_knn``, n_c // 2), neighbours among the cluster's n_c still-unlabelled
points, x itself excluded. Distances are *squared*, as the authors' faiss IndexFlatL2
returns them. A lone point (k = 0) is taken as it is.

The published algorithm assumes uncovered clusters (no labelled point) remain. When it has
run out of them, the visits above continue into clusters that already hold labels, which is
recorded as a fallback; when no cluster has an unlabelled point left, the rest is random.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import as_tensor, sq_dists
from ._common import fill_at_random, join_notes, kmeans_pp, rows_per_block
from .base import QueryContext, Selection, register

TYPICALITY_EPS = 1e-5



def typicality(x: np.ndarray, k: int, device: torch.device) -> np.ndarray:
    """1 / (mean squared distance to the k nearest other rows + 1e-5), (n,) float64; x (n, d),
    1 <= k < n. Rows go in blocks, so a large cluster never needs its full n x n matrix."""
    xt = as_tensor(x, device)
    out = np.empty(len(x), dtype=np.float64)
    step = rows_per_block(len(x))
    for s in range(0, len(x), step):
        d = sq_dists(xt[s:s + step], xt)
        rows = torch.arange(len(d), device=device)
        d[rows, rows + s] = float("inf")  # self excluded by position, not by distance
        knn = torch.topk(d, k, dim=1, largest=False).values
        out[s:s + step] = (1.0 / (knn.double().mean(1) + TYPICALITY_EPS)).cpu().numpy()
    return out


def visiting_order(assign: np.ndarray, labeled: np.ndarray, n_clusters: int,
                   min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Clusters larger than ``min_size``, fewest labelled points first, then largest, then by id;
    and their labelled counts. assign: (N,) cluster of each pool point; labeled: positions."""
    sizes = np.bincount(assign, minlength=n_clusters)
    existing = np.bincount(assign[labeled], minlength=n_clusters)
    ids = np.flatnonzero(sizes > min_size)
    order = ids[np.lexsort((ids, -sizes[ids], existing[ids]))]
    return order, existing[order]


def select(x: np.ndarray, assign: np.ndarray, labeled: np.ndarray, budget: int, knn: int,
           min_size: int, device: torch.device) -> tuple[np.ndarray, int]:
    """The TypiClust batch: up to ``budget`` pool positions, and how many of them came from
    clusters without a labelled point. x: (N, d) features; assign: (N,) clusters."""
    order, existing = visiting_order(assign, labeled, int(assign.max()) + 1, min_size)
    available = np.ones(len(assign), dtype=bool)
    available[labeled] = False
    picked, from_uncovered, idle = [], 0, 0
    visit = 0
    while len(picked) < budget and len(order) and idle < len(order):
        i = visit % len(order)
        visit += 1
        members = np.flatnonzero((assign == order[i]) & available)
        if not len(members):
            idle += 1  # a whole cycle of empty clusters ends the loop
            continue
        idle = 0
        k = min(knn, len(members) // 2)
        best = members[0] if k == 0 else members[int(np.argmax(typicality(x[members], k, device)))]
        picked.append(best)
        available[best] = False
        from_uncovered += int(existing[i] == 0)
    return np.asarray(picked, dtype=np.int64), from_uncovered


@register("typiclust")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """TypiClust: the most typical point of the largest uncovered clusters."""
    p = ctx.params
    x = ctx.data.student
    n_clusters = min(len(ctx.labeled) + budget, p["typiclust_max_clusters"])
    _, assign, _ = kmeans_pp(x, n_clusters, rng, ctx.device)
    picked, from_uncovered = select(x, assign, ctx.labeled, budget, p["typiclust_knn"],
                                    p["typiclust_min_size"], ctx.device)
    covered_note = None
    if from_uncovered < len(picked):
        covered_note = (f"no uncovered cluster left for {len(picked) - from_uncovered} of "
                        f"{budget} picks: taken from the clusters with the fewest labels")
    picked, random_note = fill_at_random(picked, ctx, budget, rng,
                                         "no cluster above the minimum size had unlabelled points left")
    return Selection(picked, join_notes(covered_note, random_note),
                     {"typiclust_clusters": n_clusters})
