"""BADGE (Ash et al., ICLR 2020): k-means++ seeding on last-layer gradient embeddings.

The gradient of the cross-entropy at the hallucinated label y^ = argmax p_S(x) with respect
to the head's weight matrix is g(x) = (p_S(x) - onehot(y^)) ⊗ a(h(x)), a K x D outer
product (the bias gradient is left out, as in the authors' code). It is never built: with
z = p - onehot(y^), <g_i, g_j> = (a_i . a_j)(z_i . z_j), so

    ||g_i - g_j||^2 = |a_i|^2 |z_i|^2 + |a_j|^2 |z_j|^2 - 2 (a_i . a_j)(z_i . z_j),

and each new centre costs one (N, D) and one (N, K) matrix-vector product.

k-means++ seeding as in the authors' ``init_centers``: the first centre is the point with the
largest ||g||; every next one is drawn with probability proportional to the squared distance
to its nearest chosen centre. If every remaining distance is zero (all gradients equal, e.g.
a student that is certain everywhere), the rest is drawn uniformly and recorded.
"""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import as_tensor, d2_sampling
from ._common import log_posterior
from .base import QueryContext, Selection, register


def gradient_factors(log_probs: np.ndarray) -> np.ndarray:
    """z = p - onehot(argmax p) from log-probabilities (n, K); (n, K) float32."""
    z = np.exp(log_probs)
    z[np.arange(len(z)), log_probs.argmax(axis=1)] -= 1.0
    return z.astype(np.float32)


def kmeanspp_seeding(a: np.ndarray, z: np.ndarray, budget: int, rng: np.random.Generator,
                     device: torch.device) -> tuple[np.ndarray, int]:
    """k-means++ seeding of the gradient embeddings a ⊗ z without building them.

    a: (n, D) adapter outputs; z: (n, K) gradient factors. Returns up to ``budget`` distinct
    row indices in pick order, the first the largest ||g||, and how many of them were drawn
    by D^2 sampling proper (the first included); the others were uniform because every
    remaining distance was 0.
    """
    at, zt = as_tensor(a, device), as_tensor(z, device)
    g_sq = (at * at).sum(1).double() * (zt * zt).sum(1).double()   # ||g_i||^2

    def sq_dist_to(c: int) -> torch.Tensor:
        cross = (at @ at[c]).double() * (zt @ zt[c]).double()
        return (g_sq + g_sq[c] - 2.0 * cross).clamp_min_(0.0)

    return d2_sampling(len(a), budget, sq_dist_to, int(torch.argmax(g_sq)), rng)


@register("badge")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """BADGE: k-means++ on gradient embeddings (p - onehot(argmax p)) ⊗ a(h(x))."""
    unlabeled = ctx.unlabeled
    features = ctx.data.student[unlabeled]
    z = gradient_factors(log_posterior(ctx, unlabeled))
    chosen, seeded = kmeanspp_seeding(ctx.student.embed(features), z, budget, rng, ctx.device)
    fallback = None
    if seeded < budget:
        fallback = (f"all gradient-embedding distances were 0 after {seeded} centres; "
                    f"{budget - seeded} of {budget} drawn uniformly at random")
    return Selection(unlabeled[chosen], fallback)
