"""Small helpers shared by the baseline strategies (docs/method.md §7)."""

from __future__ import annotations

import numpy as np
import torch

from ..geometry import kmeans, kmeans_plus_plus
from .base import QueryContext, random_fill

KMEANS_ITERS = 20  # Lloyd iterations after k-means++ seeding

# Pairwise blocks are cut to about this many float32 elements (64 MB) so that no query ever
# holds an N x N matrix; a few temporaries of this size exist at once.
BLOCK_ELEMENTS = 1 << 24


def rows_per_block(n_cols: int) -> int:
    """Rows of a block with ``n_cols`` columns that fit in ``BLOCK_ELEMENTS``."""
    return max(1, BLOCK_ELEMENTS // max(1, int(n_cols)))


def top_b(scores: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``budget`` highest scores, highest first; ties in a seeded random order."""
    order = np.lexsort((rng.permutation(len(scores)), -np.asarray(scores, dtype=np.float64)))
    return order[:budget]


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows of x (n, d) scaled to unit length (float32); all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def log_posterior(ctx: QueryContext, positions: np.ndarray) -> np.ndarray:
    """log p_S(y|x) of the trained student at pool ``positions``, (n, K) float64."""
    return ctx.student.log_proba(ctx.data.student[positions])


def seed_from(rng: np.random.Generator) -> int:
    """A seed for faiss / torch generators drawn from the round's generator."""
    return int(rng.integers(2**31 - 1))


def kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator,
              device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """k-means of x (n, d) into min(k, n) clusters from a k-means++ start (the authors' sklearn
    default), ``KMEANS_ITERS`` Lloyd iterations in faiss; centroids, assignment, squared
    distance to the centroid."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    init = x[kmeans_plus_plus(x, k, rng, device)]
    return kmeans(x, len(init), seed_from(rng), KMEANS_ITERS, init=init)


def fill_at_random(picked: np.ndarray, ctx: QueryContext, budget: int, rng: np.random.Generator,
                   why: str) -> tuple[np.ndarray, str | None]:
    """Top ``picked`` up to ``budget`` uniformly at random; the fallback note says why, or None
    when nothing was missing."""
    picked = np.asarray(picked, dtype=np.int64)
    if len(picked) >= budget:
        return picked[:budget], None
    need = budget - len(picked)
    return random_fill(picked, ctx, budget, rng), f"{why}; {need} of {budget} drawn uniformly at random"


def join_notes(*notes: str | None) -> str | None:
    """Fallback notes joined with '; ', None when there are none."""
    return "; ".join(n for n in notes if n) or None
