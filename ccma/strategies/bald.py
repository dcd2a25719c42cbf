"""BALD (Houlsby et al. 2011; Gal et al. 2017) with Monte-Carlo dropout on the student.

BALD(x) = H(mean_r p_r(x)) - mean_r H(p_r(x)) over R stochastic forward passes with the
student's input dropout active (batch norm frozen); the b highest are queried.
"""

import numpy as np
from scipy.special import xlogy

from ._common import rows_per_block, top_b
from .base import QueryContext, Selection, register



def bald_scores(mc_probs: np.ndarray) -> np.ndarray:
    """Mutual information from MC samples (R, n, K) of probabilities; (n,) float64.

    H(p) = -sum_y p log p with 0 log 0 = 0, natural log.
    """
    p = np.asarray(mc_probs, dtype=np.float64)
    mean = p.mean(axis=0)
    entropy_of_mean = -xlogy(mean, mean).sum(axis=1)
    mean_entropy = -xlogy(p, p).sum(axis=2).mean(axis=0)
    return entropy_of_mean - mean_entropy


def mc_bald(ctx: QueryContext, positions: np.ndarray, passes: int,
            rng: np.random.Generator) -> np.ndarray:
    """BALD of the student at pool ``positions``, (n,) float64.

    Rows are processed in blocks (each with its own dropout seed from ``rng``) so that the
    (R, block, K) samples and the block's dropout masks stay small.
    """
    features = ctx.data.student
    width = max(features.shape[1], passes * ctx.data.n_classes)
    step = rows_per_block(width)
    out = np.empty(len(positions), dtype=np.float64)
    for s in range(0, len(positions), step):
        block = features[positions[s:s + step]]
        seed = int(rng.integers(2**62))
        out[s:s + step] = bald_scores(ctx.student.mc_proba(block, passes, seed))
    return out


@register("bald")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """BALD: top-b mutual information under MC dropout."""
    unlabeled = ctx.unlabeled
    scores = mc_bald(ctx, unlabeled, ctx.params["mc_passes"], rng)
    return Selection(unlabeled[top_b(scores, budget, rng)])
