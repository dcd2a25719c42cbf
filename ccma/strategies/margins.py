"""Margin sampling (Scheffer et al. 2001): the b unlabelled points with the smallest gap
p_S(y1|x) - p_S(y2|x) between the two most probable classes."""

import numpy as np

from ._common import log_posterior, top_b
from .base import QueryContext, Selection, register


def margin(log_probs: np.ndarray) -> np.ndarray:
    """p(y1|x) - p(y2|x), the top-two gap, from log-probabilities (n, K) with K >= 2; (n,) float64."""
    top2 = np.exp(-np.partition(-log_probs, 1, axis=1)[:, :2])
    return top2[:, 0] - top2[:, 1]


@register("margins")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Margins: smallest top-two probability gap, seeded tie-breaks."""
    unlabeled = ctx.unlabeled
    scores = -margin(log_posterior(ctx, unlabeled))
    return Selection(unlabeled[top_b(scores, budget, rng)])
