"""Entropy sampling (Shannon; Settles 2009): the b unlabelled points with the highest H(p_S(x))."""

import numpy as np

from ..scoring import entropy
from ._common import log_posterior, top_b
from .base import QueryContext, Selection, register


@register("entropy")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Entropy: highest H(p_S(x)) (natural log), seeded tie-breaks."""
    unlabeled = ctx.unlabeled
    scores = entropy(log_posterior(ctx, unlabeled))
    return Selection(unlabeled[top_b(scores, budget, rng)])
