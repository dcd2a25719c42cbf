"""Core-set by k-center greedy (Sener & Savarese, ICLR 2018) in the student embedding space.

With the labelled set as the initial centres, b times: query the unlabelled point farthest
from its nearest centre (Euclidean distance on the adapter output a(h(x)); compared squared,
which picks the same points), then make it a centre. Ties go to the lowest pool position.
Distances to the labelled set are computed in blocks; each new centre costs one (N, D)
matrix-vector product.

With ``--init strategy`` there is no student and no centre yet: the backbone features h(x)
stand in for the embedding and the first centre is drawn uniformly at random (recorded).
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import as_tensor, nearest
from .base import QueryContext, Selection, register


def k_center_greedy(x: np.ndarray, centres: np.ndarray, budget: int, device: torch.device,
                    rng: np.random.Generator) -> np.ndarray:
    """Greedy k-center: ``budget`` rows of the candidates x (n, D), in pick order.

    centres: (m, D) initial centres, m may be 0 (then the first pick is uniform with ``rng``).
    """
    xt = as_tensor(x, device)
    sq_norms = (xt * xt).sum(1)
    if len(centres):
        min_d = torch.as_tensor(nearest(x, centres, device)[1], device=device)
    else:
        min_d = torch.full((len(x),), float("inf"), device=device)
    chosen = []
    for step in range(min(budget, len(x))):
        j = int(rng.integers(len(x))) if step == 0 and not len(centres) else int(torch.argmax(min_d))
        chosen.append(j)
        d = (sq_norms + sq_norms[j] - 2.0 * (xt @ xt[j])).clamp_min_(0.0)
        min_d = torch.minimum(min_d, d)
        min_d[j] = -1.0  # never again, even if every remaining distance is 0
    return np.asarray(chosen, dtype=np.int64)


@register("coreset")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Core-set: k-center greedy on the student embeddings, L as initial centres."""
    data = ctx.data
    unlabeled, labeled = ctx.unlabeled, ctx.labeled
    fallback = None
    if ctx.student is None:
        embed = lambda h: np.asarray(h, dtype=np.float32)  # noqa: E731
        fallback = "cold start: no student yet; k-center on the backbone features h(x)"
        if not len(labeled):
            fallback += " from a uniformly drawn first centre"
    else:
        embed = ctx.student.embed
    chosen = k_center_greedy(embed(data.student[unlabeled]), embed(data.student[labeled]),
                             budget, ctx.device, rng)
    return Selection(unlabeled[chosen], fallback)
