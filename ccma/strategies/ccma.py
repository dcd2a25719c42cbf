"""CCMA: conformal cross-modal disagreement, kappa-oversampled, then diverse."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from ..acquisition import (CCMAParams, Clustering, cluster_pool, cluster_representatives,
                           effective_tau, gaussian_kernel_, greedy_coverage, kmeans_selection,
                           max_similarity_to, median_distance, realigned_prototypes,
                           recluster_subpool, subpool_cache_name, subpool_clusters, top_k)
from ..conformal import (calibrate_coverage, calibrate_size, in_units, prediction_sets,
                         set_size_and_coverage)
from ..geometry import as_tensor, sq_dists
from ..scoring import Scores, ccma_scores, entropy
from ..teacher import teacher_log_posterior
from .base import QueryContext, Selection, random_fill, register


def _ccma_params(ctx: QueryContext) -> CCMAParams:
    return CCMAParams(**{f.name: ctx.params[f.name] for f in fields(CCMAParams)})


def pool_clustering(ctx: QueryContext, max_points_per_centroid: int = 256) -> Clustering:
    """Step 1's k-means of the whole pool (M / r clusters of the teacher embeddings), cached
    in ``ctx.cache_dir`` per seed: computed once, then read back every round."""
    p = _ccma_params(ctx)
    n_clusters = subpool_clusters(p.subpool_size, p.per_cluster)
    cache = None
    if ctx.cache_dir is not None:
        cache = ctx.cache_dir / subpool_cache_name(n_clusters, p.kmeans_iters, ctx.seed)
    return cluster_pool(ctx.data.teacher, n_clusters, ctx.seed, p.kmeans_iters, cache,
                        ctx.data.pool_key, max_points_per_centroid)


def _subpool(ctx: QueryContext, p: CCMAParams, rng: np.random.Generator) -> np.ndarray:
    """Step 1: sorted pool positions to score."""
    unlabeled = ctx.unlabeled
    if p.subpool == "none":
        return unlabeled
    if p.subpool == "kmeans" and p.recluster:  # the published code clusters even small pools
        return recluster_subpool(ctx.data.teacher, ctx.unlabeled_mask, p.subpool_size,
                                 seed=int(rng.integers(2**31)), niter=p.kmeans_iters, rng=rng)
    if len(unlabeled) <= p.subpool_size:
        return unlabeled
    if p.subpool == "random":
        return np.sort(rng.choice(unlabeled, p.subpool_size, replace=False))
    return cluster_representatives(pool_clustering(ctx), ctx.unlabeled_mask, p.per_cluster)


def _sets(log_probs: np.ndarray, threshold: float, empty_set: str) -> np.ndarray:
    sets = prediction_sets(log_probs, threshold)
    if empty_set == "top1":
        empty = ~sets.any(axis=1)
        sets[np.flatnonzero(empty), log_probs[empty].argmax(axis=1)] = True
    return sets


def _threshold(p: CCMAParams, target: float, log_probs_cal: np.ndarray, cal_labels: np.ndarray,
               log_probs_subpool: np.ndarray) -> float:
    """The round's threshold on -log p (the conformal module's common order)."""
    if p.calibration == "coverage":
        return calibrate_coverage(log_probs_cal[np.arange(len(cal_labels)), cal_labels], p.alpha)
    return calibrate_size(log_probs_subpool if p.calibrate_on == "subpool" else log_probs_cal, target)


def _conformal(p: CCMAParams, target: float, log_probs: np.ndarray, log_probs_cal: np.ndarray,
               cal_labels: np.ndarray, who: str) -> tuple[np.ndarray, dict]:
    """One predictor's sets on the subpool (S, K) and its threshold, size, coverage on D_cal."""
    t = _threshold(p, target, log_probs_cal, cal_labels, log_probs)
    size, cov = set_size_and_coverage(_sets(log_probs_cal, t, p.empty_set), cal_labels)
    return _sets(log_probs, t, p.empty_set), {f"q_{who}": in_units(t, p.nonconformity),
                                              f"set_size_{who}": size, f"coverage_{who}": cov}


@dataclass
class Scored:
    """Steps 1-2 of a round: the subpool and what was computed on it."""

    subpool: np.ndarray        # (S,) pool positions
    u: np.ndarray              # (S,) the acquisition score
    top1_teacher: np.ndarray   # (S,) argmax p_T
    top1_student: np.ndarray | None  # (S,) argmax p_S; None on a cold start
    scores: Scores | None      # the score's terms; None on a cold start (no student yet)
    diagnostics: dict


def teacher_prototypes(ctx: QueryContext, p: CCMAParams) -> np.ndarray:
    """The text prototypes of this round (K, d_T): as stored, or re-aligned to L."""
    if not p.realign_prototypes or len(ctx.labeled) == 0:
        return ctx.data.prototypes
    return realigned_prototypes(ctx.data.prototypes, ctx.data.teacher[ctx.labeled], ctx.labeled_labels)


def score_round(ctx: QueryContext, p: CCMAParams, rng: np.random.Generator) -> Scored:
    """Steps 1-2: the subpool, u(x) on it and the round's diagnostics."""
    data = ctx.data
    subpool = _subpool(ctx, p, rng)
    protos, tau = teacher_prototypes(ctx, p), effective_tau(p)
    lpt = teacher_log_posterior(data.teacher[subpool], protos, tau)
    lpt_cal = teacher_log_posterior(data.cal_teacher, protos, tau)
    sets_t, diag = _conformal(p, p.k_teacher, lpt, lpt_cal, data.cal_labels, "teacher")
    if ctx.student is None:  # cold start with init=strategy: the teacher alone
        return Scored(subpool, entropy(lpt), lpt.argmax(axis=1), None, None, diag)
    lps = ctx.student.log_proba(data.student[subpool])
    lps_cal = ctx.student.log_proba(data.cal_student)
    sets_s, diag_s = _conformal(p, p.k_student, lps, lps_cal, data.cal_labels, "student")
    scores = ccma_scores(lpt, lps, sets_t, sets_s, p.score)
    return Scored(subpool, scores.u, lpt.argmax(axis=1), lps.argmax(axis=1), scores,
                  {**diag, **diag_s, **scores.summary()})


def candidate_diagnostics(scored: Scored, candidates: np.ndarray, labels: np.ndarray) -> dict:
    """What the kappa * b candidates (positions into the subpool) are: the means of both score
    terms, and how often the teacher's and the student's top-1 is wrong on them. The labels
    of unlabelled points are read here for the record only (known in simulation); they never
    reach the selection."""
    truth = labels[scored.subpool[candidates]]
    diag = {"teacher_wrong_candidates": float(np.mean(scored.top1_teacher[candidates] != truth))}
    if scored.scores is not None:
        diag.update({"js_candidates": float(scored.scores.js[candidates].mean()),
                     "entropy_candidates": float(scored.scores.entropy_student[candidates].mean()),
                     "student_wrong_candidates": float(np.mean(scored.top1_student[candidates] != truth))})
    return diag


def candidates_of(p: CCMAParams, u: np.ndarray, budget: int) -> np.ndarray:
    """Step 3: the kappa * b highest-scoring positions of the subpool, highest first."""
    return top_k(u, max(budget, math.ceil(p.kappa * budget)))


def _select(ctx: QueryContext, p: CCMAParams, u: np.ndarray, subpool: np.ndarray,
            candidates: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Step 4: the batch out of the candidates; returns positions into ``subpool``."""
    if not p.diversity:
        return candidates[:budget]
    space = ctx.data.teacher if p.kernel_space == "teacher" else ctx.data.student
    x = np.asarray(space[subpool[candidates]], dtype=np.float32)
    if p.final_selection == "kmeans":
        return candidates[kmeans_selection(x, budget, int(rng.integers(2**31)), p.kmeans_iters)]
    t = as_tensor(x, ctx.device)
    sq = sq_dists(t, t)  # one (C, C) product serves both sigma and the kernel
    sigma = median_distance(sq) if p.sigma == "median" else float(p.sigma)
    sigma = sigma if sigma > 0 else 1.0  # all candidates identical: any scale gives the same picks
    labeled = np.asarray(space[ctx.labeled], dtype=np.float32)
    initial = max_similarity_to(x, labeled, sigma, ctx.device)
    sim = gaussian_kernel_(sq, sigma).cpu().numpy()
    chosen, _ = greedy_coverage(u[candidates], sim, initial, budget)
    return candidates[chosen]


def diagnose(ctx: QueryContext) -> dict:
    """The diagnostics of a round without selecting (the last round has no query)."""
    rng = np.random.default_rng([ctx.seed, ctx.round, 1])
    return score_round(ctx, _ccma_params(ctx), rng).diagnostics


@register("ccma", diagnose=diagnose)
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Conformal cross-modal acquisition (the paper's method)."""
    p = _ccma_params(ctx)
    scored = score_round(ctx, p, rng)
    notes = ["cold start: teacher-only score H(p_T)"] if ctx.student is None else []
    if p.subpool != "none" and len(scored.subpool) == len(ctx.unlabeled):
        notes.append(f"{p.subpool} subpool: every unlabelled point scored (|U| <= M = "
                     f"{p.subpool_size}); the same as no subpool")
    candidates = candidates_of(p, scored.u, budget)
    picked = scored.subpool[_select(ctx, p, scored.u, scored.subpool, candidates, budget, rng)]
    if len(picked) < budget:
        notes.append(f"subpool had {len(scored.subpool)} points < b; filled at random")
        picked = random_fill(picked, ctx, budget, rng)
    diagnostics = {**scored.diagnostics, **candidate_diagnostics(scored, candidates, ctx.data.labels)}
    return Selection(picked.astype(np.int64), "; ".join(notes) or None, diagnostics)
