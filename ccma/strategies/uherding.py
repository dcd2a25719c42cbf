"""Uncertainty Herding (Bae, Oliveira & Sutherland, ICLR 2025), as in the authors' ``uherding.py``.

Greedy maximisation of the uncertainty coverage

    UC(S) = sum_x u(x) max_{s in L ∪ S} k(x, s)

over the pool: b times, query the unlabelled c with the largest gain
sum_x u(x) max(k(x, c) - m(x), 0), m(x) = max_{s in L ∪ S} k(x, s) so far.

- u(x) = 1 - (p(y1|x) - p(y2|x)), the margin uncertainty of the trained student's
  temperature-scaled posterior softmax(logits / T); u = 0 on labelled points.
- T: a second student is trained on the first 70 % of L (in acquisition order) and T is the
  value in {1.0, 1.1, ..., 19.9} with the lowest expected calibration error (K equal-width
  confidence bins) on the last ``uherding_val_fraction`` (30 %) of L.
- k(x, y) = exp(-||x - y||^2 / sigma^2) on the L2-normalised backbone features h(x);
  sigma = the smallest non-zero distance between two labelled points (the authors'
  "adaptive radius"; pairs closer than 1e-5 count as duplicates).

The authors score a random subset of at most 35,000 unlabelled points to fit their dense
kernel in GPU memory; here the gains over the whole pool are computed in blocks and then
kept exact incrementally: after a pick, only the points x whose m(x) grew change anyone's
gain, so only their kernel rows are recomputed.

Fallbacks (recorded): temperature 1 when L is too small to hold out a calibration split;
sigma = 1 when no two labelled points differ; when every remaining gain is 0 (everything
uncertain is covered) the rest of the batch is drawn uniformly at random, which is what the
authors' argmax over their randomly permuted subset amounts to.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import softmax

from ..geometry import as_tensor, nearest, sq_dists
from ..student import train_student
from ._common import fill_at_random, join_notes, l2_normalise, rows_per_block, seed_from
from .base import QueryContext, Selection, register

TEMPERATURES = np.round(np.arange(1.0, 20.0, 0.1), 1)
DUPLICATE_DIST_SQ = 1e-10



def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (lower, upper]; probs (n, K)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    ece = 0.0
    for b in np.unique(bins):
        inside = bins == b
        ece += inside.mean() * abs(conf[inside].mean() - correct[inside].mean())
    return float(ece)


def best_temperature(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> float:
    """The grid temperature with the lowest ECE (K bins) of softmax(logits / T); first on ties."""
    eces = [expected_calibration_error(softmax(logits / t, axis=1), labels, n_classes)
            for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(eces))])


def margin_uncertainty(logits: np.ndarray, temperature: float) -> np.ndarray:
    """1 - (p1 - p2) of softmax(logits / T), (n,) float64."""
    p = softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)
    top2 = -np.partition(-p, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def fit_temperature(ctx: QueryContext, val_fraction: float, seed: int) -> tuple[float, str | None]:
    """T from a student trained on the earliest labels and calibrated on the latest."""
    labeled = ctx.labeled
    n_val = int(len(labeled) * val_fraction)
    if n_val < 1 or len(labeled) - n_val < 2:
        return 1.0, f"{len(labeled)} labels are too few to hold out a calibration split: T = 1"
    train, val = labeled[:-n_val], labeled[-n_val:]
    data = ctx.data
    held_out = train_student(data.student[train], data.labels[train], data.n_classes,
                             ctx.student.config, seed)
    return best_temperature(held_out.logits(data.student[val]), data.labels[val], data.n_classes), None


def smallest_nonzero_distance(x: np.ndarray) -> float | None:
    """min ||x_i - x_j|| over pairs further apart than the duplicate threshold; None if none.
    x: (m, d), m the labelled set (small), float64."""
    t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    best, step = None, rows_per_block(len(t))
    for s in range(0, len(t), step):
        d = sq_dists(t[s:s + step], t)
        d = d[d > DUPLICATE_DIST_SQ]
        if d.numel():
            best = min(best, float(d.min())) if best is not None else float(d.min())
    return None if best is None else best ** 0.5


def herding(x: np.ndarray, u: np.ndarray, labeled_x: np.ndarray, sigma: float, budget: int,
            device: torch.device) -> np.ndarray:
    """Greedy uncertainty coverage over the unlabelled rows x (n, d) with weights u (n,),
    labelled rows ``labeled_x`` (m, d) and RBF width ``sigma``. Returns up to ``budget`` rows
    of x in pick order; it stops early when no gain is positive."""
    xt = as_tensor(x, device)
    sq_norms = (xt * xt).sum(1)
    inv = 1.0 / (sigma * sigma)
    ut = torch.as_tensor(u, dtype=torch.float64, device=device)
    if len(labeled_x):
        m = torch.exp(-torch.as_tensor(nearest(x, labeled_x, device)[1], device=device).double() * inv)
    else:
        m = torch.zeros(len(x), dtype=torch.float64, device=device)
    step = rows_per_block(len(x))

    def gain_drop(rows: torch.Tensor, old: torch.Tensor, new: torch.Tensor | None) -> torch.Tensor:
        """For every column c: sum over the given rows x of
        u(x) [relu(k(x, c) - old(x)) - relu(k(x, c) - new(x))]; new = None drops that term.
        Only pairs with k(x, c) > old(x) contribute (new >= old), i.e. ||x - c||^2 below
        -sigma^2 log old(x): the kernel is evaluated on those pairs alone (a superset: the
        radius is widened by a margin far above the round-off of log and exp)."""
        out = torch.zeros(len(x), dtype=torch.float64, device=device)
        reach = (-torch.log(old) * (sigma * sigma) * (1 + 1e-6) + 1e-12 * sigma * sigma).float()
        reach = torch.nextafter(reach, torch.tensor(torch.inf, device=device))
        for s in range(0, len(rows), step):
            r = rows[s:s + step]
            d = sq_dists(xt[r], xt, sq_norms[r], sq_norms)  # the pool's norms computed once
            i, c = torch.nonzero(d < reach[s:s + step, None], as_tuple=True)
            k = d[i, c].double().mul_(-inv).exp_()
            drop = (k - old[s + i]).clamp_min_(0.0)
            if new is not None:
                drop -= k.sub_(new[s + i]).clamp_min_(0.0)
            out += torch.bincount(c, weights=ut[r][i] * drop, minlength=len(x))
        return out

    gains = gain_drop(torch.arange(len(x), device=device), m, None)
    available = torch.ones(len(x), dtype=torch.bool, device=device)
    chosen = []
    for _ in range(min(budget, len(x))):
        j = int(torch.argmax(torch.where(available, gains, -torch.inf)))
        if gains[j] <= 0:
            break
        chosen.append(j)
        available[j] = False
        k_j = torch.exp(-(sq_norms + sq_norms[j] - 2.0 * (xt @ xt[j])).clamp_min_(0.0).double() * inv)
        # only the rows whose running max grows change anyone's gain
        grew = torch.nonzero(k_j > m).flatten()
        gains -= gain_drop(grew, m[grew], k_j[grew])
        m[grew] = k_j[grew]
    return np.asarray(chosen, dtype=np.int64)


@register("uherding")
def query(ctx: QueryContext, budget: int, rng: np.random.Generator) -> Selection:
    """UHerding: greedy uncertainty-weighted kernel coverage."""
    data = ctx.data
    unlabeled, labeled = ctx.unlabeled, ctx.labeled
    temperature, t_note = fit_temperature(ctx, ctx.params["uherding_val_fraction"], seed_from(rng))
    u = margin_uncertainty(ctx.student.logits(data.student[unlabeled]), temperature)
    x_u = l2_normalise(data.student[unlabeled])
    x_l = l2_normalise(data.student[labeled])
    sigma, s_note = smallest_nonzero_distance(x_l), None
    if sigma is None:
        sigma, s_note = 1.0, "no two labelled points differ: sigma = 1"
    chosen = herding(x_u, u, x_l, sigma, budget, ctx.device)
    picked, r_note = fill_at_random(unlabeled[chosen], ctx, budget, rng,
                                    f"coverage gains were all 0 after {len(chosen)} picks")
    return Selection(picked, join_notes(t_note, s_note, r_note),
                     {"uherding_temperature": temperature, "uherding_sigma": sigma})
