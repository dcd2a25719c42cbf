"""Settings declared without torch, so that the command line lists them at once: the run's
defaults, the student's training configuration and CCMA's parameters, presets and ablation
variants (docs/method.md §6, §12). ``ccma.loop``, ``ccma.student`` and ``ccma.acquisition``
re-export them next to the code that uses them."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

INITS = ("random", "strategy")
# ``ccma aggregate``'s defaults (the report's tables and figures)
DEFAULT_TARGETS = (0.80, 0.85, 0.90)
DEFAULT_RELATIVE_TARGETS = (0.90, 0.95)  # fractions of the best final accuracy on the dataset
DEFAULT_ITERATIONS = (1, 4, 8, 16, 20)   # the columns of the paper's Table 1
SENSITIVITY_PARAMS = ("kappa", "tau")
TIE_METHODS = ("min", "average", "max", "dense", "ordinal")  # scipy.stats.rankdata's
DEFAULT_TEACHER = "clip-vit-l-14"
DEFAULT_STUDENT = "dinov2-large"


@dataclass(frozen=True)
class StudentConfig:
    """How the student trains; each value's range is in ``ccma.parameters.RANGES``."""

    dropout: float = 0.75
    lr: float = 1e-2
    weight_decay: float = 1e-2
    batch_size: int = 4096
    max_epochs: int = 400
    patience: int = 20
    min_delta: float = 1e-3
    device: str = "auto"


SUBPOOLS = ("kmeans", "random", "none")
SCORES = ("gated", "entropy", "js")  # gated (the paper's u) | entropy (H(p_S)) | js (JS only)
# The published code replaces a teacher temperature below 0.03 by 0.07.
REFERENCE_TAU_FLOOR, REFERENCE_TAU_REPLACEMENT = 0.03, 0.07


@dataclass(frozen=True)
class CCMAParams:
    """Every knob of CCMA; defaults are the ``paper`` preset, variant V1. The numeric ones'
    ranges are in ``ccma.parameters.RANGES``."""

    tau: float = 0.01                    # teacher temperature
    tau_floor: bool = False              # tau < 0.03 replaced by 0.07 (published code)
    score: str = "gated"                 # gated (the paper's u) | entropy (H(p_S)) | js (JS only)
    realign_prototypes: bool = False     # re-match prototypes to labelled class means each round
    k_teacher: float = 3.0               # size target of the teacher's sets
    k_student: float = 5.0               # size target of the student's sets
    calibration: str = "size"            # size | coverage
    alpha: float = 0.1                   # error rate for coverage-targeted calibration
    calibrate_on: str = "calibration"    # calibration (D_cal) | subpool (sizes on the scored subpool)
    nonconformity: str = "one_minus_p"   # one_minus_p | neg_log_p
    empty_set: str = "union"             # union (docs/method.md §5's fallback) | top1 (never empty)
    subpool: str = "kmeans"              # kmeans | random | none
    subpool_size: int = 5000             # M
    per_cluster: int = 1                 # r, points taken per k-means cluster
    recluster: bool = False              # re-cluster unlabelled points every round (reference code)
    kmeans_iters: int = 20
    kappa: float = 20.0                  # oversampling: candidates = kappa * b
    diversity: bool = True               # greedy coverage (or k-means) on the candidates
    final_selection: str = "coverage"    # coverage | kmeans
    kernel_space: str = "teacher"        # teacher | student (features the kernel compares)
    sigma: str = "median"                # 'median' pairwise distance of the candidates, or a number


VARIANTS = {  # the paper's Table 2
    "V1": {"subpool": "kmeans", "diversity": True},
    "V2": {"subpool": "none", "diversity": True},
    "V3": {"subpool": "random", "diversity": True},
    "V4": {"subpool": "kmeans", "diversity": False},
    "V5": {"subpool": "none", "diversity": False},
}

PRESETS = {  # docs/method.md §12
    "paper": {},
    "reference-code": {
        "nonconformity": "neg_log_p", "calibrate_on": "subpool", "empty_set": "top1",
        "tau": 0.03, "final_selection": "kmeans", "recluster": True,
        "tau_floor": True, "realign_prototypes": True,
    },
}
PRESET_TEACHERS = {"reference-code": "clip-vit-g-14"}  # the authors' configuration: ViT-g/14


def effective_tau(p: CCMAParams) -> float:
    """The temperature used: tau, or 0.07 where the published code's floor replaces it."""
    if p.tau_floor and p.tau < REFERENCE_TAU_FLOOR:
        return REFERENCE_TAU_REPLACEMENT
    return p.tau


def resolve_params(preset: str = "paper", variant: str = "V1", **overrides) -> CCMAParams:
    """Preset, then variant, then explicit overrides (None means 'not given')."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}")
    known = {f.name for f in fields(CCMAParams)}
    unknown = set(overrides) - known
    if unknown:
        raise ValueError(f"unknown CCMA parameter(s): {sorted(unknown)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    params = replace(CCMAParams(), **PRESETS[preset], **VARIANTS[variant])
    return replace(params, **given)
