"""PowerBALD (Kirsch et al., TMLR 2023): stochastic batch acquisition.

b points are drawn without replacement with probability proportional to BALD(x)^beta, by
Gumbel-top-b: the b largest beta * log BALD(x) + g_x, g_x ~ Gumbel(0, 1). Only positive
scores can be drawn (BALD is >= 0 in exact arithmetic; round-off can make it slightly
negative); when fewer than b are positive the rest is drawn uniformly and recorded.
"""

import numpy as np

from ._common import fill_at_random
from .bald import mc_bald
from .base import QueryContext, Selection, register



def power_sample(scores: np.ndarray, budget: int, beta: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Positions of up to ``budget`` positive scores drawn without replacement with weights
    scores^beta (successive sampling, via Gumbel-top-k). Fewer when fewer are positive."""
    positive = np.flatnonzero(scores > 0)
    keys = beta * np.log(scores[positive]) + rng.gumbel(size=len(positive))
    return positive[np.argsort(-keys, kind="stable")[:budget]]


@register("powerbald")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """PowerBALD: sample b with probability proportional to BALD^beta."""
    beta = ctx.params["power_beta"]
    unlabeled = ctx.unlabeled
    scores = mc_bald(ctx, unlabeled, ctx.params["mc_passes"], rng)
    picked = unlabeled[power_sample(scores, budget, beta, rng)]
    picked, fallback = fill_at_random(picked, ctx, budget, rng,
                                      f"only {len(picked)} BALD scores were positive")
    return Selection(picked, fallback)
