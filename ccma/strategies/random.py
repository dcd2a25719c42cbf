"""Random sampling: b unlabelled points uniformly, without replacement."""

import numpy as np

from .base import QueryContext, Selection, register


@register("random")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Uniform sampling of the unlabelled pool."""
    return Selection(rng.choice(ctx.unlabeled, size=budget, replace=False).astype(np.int64))
