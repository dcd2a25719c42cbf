"""CCMA: conformal cross-modal disagreement, kappa-oversampled, then diverse (SPEC 4-6, 12)."""

from __future__ import annotations

import math
from dataclasses import asdict, fields

import numpy as np

from ..acquisition import (PRESETS, SUBPOOLS, VARIANTS, CCMAParams, Clustering, cluster_pool,
                           cluster_representatives, gaussian_kernel_, greedy_coverage,
                           kmeans_selection, max_similarity_to, median_distance,
                           recluster_subpool, resolve_params, subpool_cache_name,
                           subpool_clusters, top_k)
from ..conformal import (calibrate_coverage, calibrate_size, nonconformity, prediction_sets,
                         set_size_and_coverage)
from ..geometry import as_tensor, sq_dists
from ..scoring import ccma_scores, entropy
from ..teacher import teacher_log_posterior
from .base import Param, QueryContext, Selection, random_fill, register

_CHOICES = {
    "calibration": ("size", "coverage"), "calibrate_on": ("calibration", "subpool"),
    "nonconformity": ("one_minus_p", "neg_log_p"), "empty_set": ("union", "top1"),
    "subpool": SUBPOOLS, "final_selection": ("coverage", "kmeans"),
    "kernel_space": ("teacher", "student"),
}


def _bool(text) -> bool:
    if isinstance(text, bool):
        return text
    if str(text).lower() in ("1", "true", "yes", "on"):
        return True
    if str(text).lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _param(f) -> Param:
    typ = {bool: _bool, int: int, float: float}.get(type(f.default), str)
    return Param(f.name, None, f"CCMA: {f.name} (paper preset, V1: {f.default}; "
                               "unset = taken from --preset and --variant)", typ,
                 _CHOICES.get(f.name))


PARAMS = (
    Param("preset", "paper", "CCMA: preset of SPEC section 12", str, tuple(PRESETS)),
    Param("variant", "V1", "CCMA: ablation variant of the paper's Table 2", str, tuple(VARIANTS)),
    *(_param(f) for f in fields(CCMAParams)),
)


def resolve(params: dict) -> dict:
    """The effective parameters: preset, then variant, then explicit values."""
    overrides = {k: v for k, v in params.items() if k not in ("preset", "variant")}
    resolved = resolve_params(params.get("preset", "paper"), params.get("variant", "V1"), **overrides)
    return {"preset": params.get("preset", "paper"), "variant": params.get("variant", "V1"),
            **asdict(resolved)}


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
    if p.subpool == "none" or len(unlabeled) <= p.subpool_size:
        return unlabeled
    if p.subpool == "random":
        return np.sort(rng.choice(unlabeled, p.subpool_size, replace=False))
    if p.recluster:
        return recluster_subpool(ctx.data.teacher, ctx.unlabeled_mask, p.subpool_size,
                                 seed=int(rng.integers(2**31)), niter=p.kmeans_iters, rng=rng)
    return cluster_representatives(pool_clustering(ctx), ctx.unlabeled_mask, p.per_cluster)


def _sets(scores: np.ndarray, q: float, log_probs: np.ndarray, empty_set: str) -> np.ndarray:
    sets = prediction_sets(scores, q)
    if empty_set == "top1":
        empty = ~sets.any(axis=1)
        sets[np.flatnonzero(empty), log_probs[empty].argmax(axis=1)] = True
    return sets


def _threshold(p: CCMAParams, target: float, cal_scores: np.ndarray, cal_labels: np.ndarray,
               subpool_scores: np.ndarray) -> float:
    if p.calibration == "coverage":
        return calibrate_coverage(cal_scores[np.arange(len(cal_labels)), cal_labels], p.alpha,
                                  p.nonconformity)
    return calibrate_size(subpool_scores if p.calibrate_on == "subpool" else cal_scores, target)


def _score(ctx: QueryContext, p: CCMAParams, rng: np.random.Generator):
    """Steps 1-2: the subpool, u(x) on it and the round's diagnostics."""
    data = ctx.data
    subpool = _subpool(ctx, p, rng)
    lpt = teacher_log_posterior(data.teacher[subpool], data.prototypes, p.tau)
    lpt_cal = teacher_log_posterior(data.cal_teacher, data.prototypes, p.tau)
    st, st_cal = nonconformity(lpt, p.nonconformity), nonconformity(lpt_cal, p.nonconformity)
    q_t = _threshold(p, p.k_teacher, st_cal, data.cal_labels, st)
    sets_t = _sets(st, q_t, lpt, p.empty_set)
    size_t, cov_t = set_size_and_coverage(_sets(st_cal, q_t, lpt_cal, p.empty_set), data.cal_labels)
    diag = {"q_teacher": q_t, "set_size_teacher": size_t, "coverage_teacher": cov_t}
    if ctx.student is None:  # cold start with init=strategy: the teacher alone
        return subpool, entropy(lpt), diag
    lps = ctx.student.log_proba(data.student[subpool])
    lps_cal = ctx.student.log_proba(data.cal_student)
    ss, ss_cal = nonconformity(lps, p.nonconformity), nonconformity(lps_cal, p.nonconformity)
    q_s = _threshold(p, p.k_student, ss_cal, data.cal_labels, ss)
    sets_s = _sets(ss, q_s, lps, p.empty_set)
    size_s, cov_s = set_size_and_coverage(_sets(ss_cal, q_s, lps_cal, p.empty_set), data.cal_labels)
    scores = ccma_scores(lpt, lps, sets_t, sets_s)
    diag.update({"q_student": q_s, "set_size_student": size_s, "coverage_student": cov_s,
                 **scores.summary()})
    return subpool, scores.u, diag


def _select(ctx: QueryContext, p: CCMAParams, u: np.ndarray, subpool: np.ndarray, budget: int,
            rng: np.random.Generator) -> np.ndarray:
    """Steps 3-4: kappa * b candidates, then the batch; returns positions into ``subpool``."""
    candidates = top_k(u, max(budget, math.ceil(p.kappa * budget)))
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
    return _score(ctx, _ccma_params(ctx), rng)[2]


@register("ccma", params=PARAMS, needs_student=False, diagnose=diagnose, resolve=resolve)
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """Conformal cross-modal acquisition (the paper's method)."""
    p = _ccma_params(ctx)
    subpool, u, diag = _score(ctx, p, rng)
    fallback = "cold start: teacher-only score H(p_T)" if ctx.student is None else None
    picked = subpool[_select(ctx, p, u, subpool, budget, rng)]
    if len(picked) < budget:
        fallback = "; ".join(filter(None, [fallback, f"subpool had {len(subpool)} points < b; "
                                                     "filled at random"]))
        picked = random_fill(picked, ctx, budget, rng)
    return Selection(picked.astype(np.int64), fallback, diag)
