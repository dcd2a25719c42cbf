"""Least confidence (Lewis & Gale 1994): the b unlabelled points with the highest 1 - max_y p_S(y|x)."""

import numpy as np

from ._common import log_posterior, top_b
from .base import QueryContext, Selection, register


def least_confidence(log_probs: np.ndarray) -> np.ndarray:
    """1 - max_y p(y|x) from log-probabilities (n, K); (n,) float64."""
    return 1.0 - np.exp(log_probs.max(axis=1))


@register("uncertainty")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Least confidence: highest 1 - max_y p_S(y|x), seeded tie-breaks."""
    unlabeled = ctx.unlabeled
    scores = least_confidence(log_posterior(ctx, unlabeled))
    return Selection(unlabeled[top_b(scores, budget, rng)])
