"""Alfa-mix (Parvaneh et al., CVPR 2022): label flips under feature interpolation.

In the student embedding space (the adapter output a(h(x))), each unlabelled z is mixed with
every class anchor z* (the mean labelled embedding of the class; a class without labels
takes the mean of all labelled embeddings): z~ = (1 - alpha) z + alpha z*, with one alpha per
dimension. z is a *candidate* when the head's prediction on some z~ differs from its
prediction on z. The cap on alpha starts at ``alfamix_cap`` (1/32) and grows by that step
until more than b candidates are found or the cap reaches 1. The batch is one point per
cluster of k-means with min(b, #candidates) clusters on the L2-normalised candidate
embeddings (the member nearest each centre); when that gives fewer than b points, the rest
is drawn uniformly at random without duplicates and recorded as a fallback.

alpha, as in the authors' code (``alpha_mix_sampling.py``):
- ``learned`` (``--c_learn``, the paper's optimised alpha): per anchor, alpha starts at
  N(cap/2, cap/2) clipped to [1e-8, cap] and takes ``alfamix_steps`` Adam steps on
  sum_x [-CE(head(z~), y^) + ``alfamix_l2`` ||alpha_x||], a fresh Adam each step, learning
  rate ``alfamix_lr`` for the first two thirds of the steps and a tenth of it after, alpha
  clipped back to [1e-8, cap] after every step; z flips if the prediction changes at any of
  the alphas evaluated before each step (the authors' loop checks before stepping).
- ``closed-form`` (``--c_find_optimum_alpha``): alpha = eps ||z* - z|| / ||grad|| *
  grad / (z* - z + 1e-8), grad = d CE(head(z), y^) / dz, eps = cap / sqrt(D), unclipped;
  a point whose gradient is zero does not move.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..acquisition import Clustering, cluster_representatives
from ..geometry import as_tensor
from ._common import (fill_at_random, kmeans_pp, l2_normalise, rows_per_block,
                      seed_from)
from .base import QueryContext, Selection, register

ADAM_EPS = 1e-8     # torch.optim.Adam's default eps



def class_anchors(z_labeled: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean labelled embedding per class (K, D); a class with no label gets the overall mean."""
    overall = z_labeled.mean(axis=0)
    anchors = np.tile(overall, (n_classes, 1))
    for c in np.unique(labels):
        anchors[c] = z_labeled[labels == c].mean(axis=0)
    return anchors.astype(np.float32)


class LinearHead:
    """The student's head as a frozen function z -> W z + b (alpha is the only variable)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor):
        self.weight, self.bias = weight.detach(), bias.detach()

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.weight, self.bias)


def _closed_form_flips(z: torch.Tensor, pred: torch.Tensor, anchor: torch.Tensor, head: LinearHead,
                       cap: float) -> torch.Tensor:
    # d CE(W z + b, y) / dz = W^T (softmax(W z + b) - onehot(y)), row by row
    residual = torch.softmax(head(z), dim=1)
    residual[torch.arange(len(z), device=z.device), pred] -= 1.0
    grad = residual @ head.weight
    diff = anchor[None] - z
    eps = cap / math.sqrt(z.shape[1])
    gnorm = grad.norm(dim=1, keepdim=True)
    scale = torch.where(gnorm > 0, eps * diff.norm(dim=1, keepdim=True) / gnorm.clamp_min(1e-30), 0.0)
    alpha = scale * grad / (diff + 1e-8)
    return head(z + alpha * diff).argmax(1) != pred


def alpha_step(alpha: torch.Tensor, z: torch.Tensor, diff: torch.Tensor, onehot: torch.Tensor,
               head: LinearHead, rate: float, l2: float,
               cap: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the learned alpha (n, D): the head's logits at z~ = z + alpha diff, and
    alpha after a fresh Adam step (learning rate ``rate``) on -CE(logits, y^) + l2 ||alpha||
    per row, clipped to [1e-8, cap]. A fresh Adam's bias corrections cancel, so its first
    step is rate * g / (|g| + eps); the head is linear, so g is written out.

    The (n, D) arithmetic is memory-bound: it runs in place on two buffers, each operation
    the same as in the plain expressions (so the same values), without a fresh tensor each."""
    buf = torch.mul(alpha, diff)
    logits = head(buf.add_(z))
    grad = (torch.softmax(logits, dim=1) - onehot) @ head.weight
    grad.mul_(diff).neg_()                                  # -(r W) * diff
    torch.mul(alpha, l2, out=buf).div_(alpha.norm(dim=1, keepdim=True))
    grad += buf                                             # + l2 alpha / ||alpha||
    torch.abs(grad, out=buf).add_(ADAM_EPS)
    grad.mul_(rate).div_(buf)                               # rate g / (|g| + eps)
    return logits, torch.sub(alpha, grad, out=grad).clamp_(1e-8, cap)


def _learned_flips(z: torch.Tensor, pred: torch.Tensor, anchor: torch.Tensor, head: LinearHead,
                   cap: float, steps: int, lr: float, l2: float,
                   gen: torch.Generator) -> torch.Tensor:
    diff = anchor[None] - z                       # z~ = (1 - alpha) z + alpha z* = z + alpha diff
    onehot = F.one_hot(pred, head.weight.shape[0]).to(z.dtype)
    alpha = torch.normal(cap / 2, cap / 2, size=z.shape, generator=gen, device=z.device)
    alpha = alpha.clamp_(1e-8, cap)
    flipped = torch.zeros(len(z), dtype=torch.bool, device=z.device)
    for step in range(steps):
        rate = lr if step < steps * 2 / 3 else lr / 10
        logits, alpha = alpha_step(alpha, z, diff, onehot, head, rate, l2, cap)
        flipped |= logits.argmax(1) != pred     # checked before each step, as the authors do
    return flipped


def find_candidates(z: np.ndarray, pred: np.ndarray, anchors: np.ndarray, head: LinearHead,
                    cap: float, params: dict, device: torch.device,
                    gen: torch.Generator) -> np.ndarray:
    """(n,) bool: which rows of z (n, D) flip their predicted label ``pred`` (n,) when mixed
    towards some anchor (K, D) with alpha capped at ``cap``. Rows go in blocks."""
    mode = params["alfamix_alpha"]
    flips = np.zeros(len(z), dtype=bool)
    step = rows_per_block(4 * z.shape[1])  # z, diff, alpha and its gradient per row
    anchors_t = as_tensor(anchors, device)
    for s in range(0, len(z), step):
        zt = as_tensor(z[s:s + step], device)
        yt = torch.as_tensor(pred[s:s + step], device=device)
        block = torch.zeros(len(zt), dtype=torch.bool, device=device)
        for anchor in anchors_t:
            if mode == "closed-form":
                block |= _closed_form_flips(zt, yt, anchor, head, cap)
            else:
                block |= _learned_flips(zt, yt, anchor, head, cap, params["alfamix_steps"],
                                        params["alfamix_lr"], params["alfamix_l2"], gen)
        flips[s:s + step] = block.cpu().numpy()
    return flips


@register("alfamix")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Alfa-mix: cluster the points whose label flips under anchor interpolation."""
    student, data = ctx.student, ctx.data
    unlabeled = ctx.unlabeled
    z_u = student.embed(data.student[unlabeled])
    pred = student.predict(data.student[unlabeled])
    anchors = class_anchors(student.embed(data.student[ctx.labeled]), ctx.labeled_labels,
                            data.n_classes)
    head = LinearHead(student.net.head.weight, student.net.head.bias)
    gen = torch.Generator(device=ctx.device).manual_seed(seed_from(rng))
    step = ctx.params["alfamix_cap"]
    candidates = np.zeros(len(unlabeled), dtype=bool)
    cap = 0.0
    while cap < 1.0:
        cap = min(1.0, cap + step)
        candidates |= find_candidates(z_u, pred, anchors, head, cap, ctx.params, ctx.device, gen)
        if candidates.sum() > budget:
            break
    cand = np.flatnonzero(candidates)
    picked = np.zeros(0, dtype=np.int64)
    if len(cand):
        x = l2_normalise(z_u[cand])
        _, assign, dist = kmeans_pp(x, budget, rng, ctx.device)
        reps = cluster_representatives(Clustering(assign, dist), np.ones(len(cand), bool), 1)
        picked = unlabeled[cand[reps]]
    picked, fallback = fill_at_random(
        picked, ctx, budget, rng,
        f"{len(cand)} candidates flipped (alpha cap {cap:.4g}) and k-means kept {len(picked)}")
    return Selection(picked, fallback, {"alfamix_candidates": int(len(cand)), "alfamix_cap": cap})
