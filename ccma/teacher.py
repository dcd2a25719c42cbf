"""The teacher: zero-shot CLIP posterior from image embeddings and text prototypes (docs/method.md §3)."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

CHUNK = 65536


def teacher_log_posterior(embeddings: np.ndarray, prototypes: np.ndarray, tau: float) -> np.ndarray:
    """log p_T(c|x) = log_softmax_c(<z_T(x), t_c> / tau).

    embeddings: (N, d_T) L2-normalised; prototypes: (K, d_T) L2-normalised.
    Returns (N, K) float64: log-probabilities keep the tails that tau = 0.01 would underflow.
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    protos = np.asarray(prototypes, dtype=np.float64)
    out = np.empty((embeddings.shape[0], protos.shape[0]), dtype=np.float64)
    for start in range(0, embeddings.shape[0], CHUNK):
        block = np.asarray(embeddings[start:start + CHUNK], dtype=np.float64)
        out[start:start + CHUNK] = log_softmax(block @ protos.T / tau, axis=1)
    return out


def zero_shot_predictions(embeddings: np.ndarray, prototypes: np.ndarray) -> np.ndarray:
    """argmax_c <z_T(x), t_c>, (N,) int64; independent of tau."""
    protos = np.asarray(prototypes, dtype=np.float32)
    return np.concatenate([
        np.argmax(np.asarray(embeddings[s:s + CHUNK], dtype=np.float32) @ protos.T, axis=1)
        for s in range(0, max(embeddings.shape[0], 1), CHUNK)
    ]).astype(np.int64)


def zero_shot_accuracy(embeddings: np.ndarray, labels: np.ndarray, prototypes: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(zero_shot_predictions(embeddings, prototypes) == np.asarray(labels)))
