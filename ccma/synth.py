"""The synthetic cross-modal benchmark (docs/method.md §11).

Each of K classes is a mixture of a few modes, drawn independently in a teacher space
(d_T) and a student space (d_S). In each space classes come in *confusable groups*: the
class directions of one group share a common component, so the classes of a group are
close to each other. The teacher's groups and the student's groups are the same for
``confusion_mismatch = 0`` and independent for ``confusion_mismatch = 1``: this is how far
the teacher's confusions differ from the student's. Text prototypes are noisy copies of the
teacher's class directions shifted by one common offset (the modality gap). The teacher's
sample noise is set by bisection so that its zero-shot accuracy hits ``teacher_accuracy``.

Two regimes ship: ``mismatch`` (an informative but imperfect teacher whose confusions differ
from the student's; where CCMA should pay) and ``aligned`` (a near-oracle teacher, the regime
where the paper finds that coverage dominates).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .features import FeatureSplit, feature_path, prototype_path, write_features, write_prototypes
from .teacher import zero_shot_accuracy

BISECTION_STEPS = 24
PROBE_ROWS = 6000


@dataclass(frozen=True)
class SynthConfig:
    n_classes: int = 20
    n_train: int = 3000
    n_test: int = 1000
    teacher_dim: int = 64
    student_dim: int = 96
    modes: int = 3                  # mixture components per class
    mode_spread: float = 0.6        # how far modes sit from their class direction
    group_size: int = 4             # classes per confusable group
    group_strength: float = 0.8     # share of a class direction common to its group (0..1)
    teacher_accuracy: float = 0.7   # target zero-shot accuracy of the teacher
    confusion_mismatch: float = 1.0  # 0: same confusable groups in both spaces; 1: independent
    student_noise: float = 2.0      # sample noise in student space (relative to class distance)
    prototype_noise: float = 0.3
    prototype_offset: float = 0.5   # norm of the common shift of all prototypes
    seed: int = 0


REGIMES = {
    "mismatch": {"teacher_accuracy": 0.7, "confusion_mismatch": 1.0},
    "aligned": {"teacher_accuracy": 0.97, "confusion_mismatch": 0.0},
}

SCALES = {
    "small": {},
    "cifar100": {"n_classes": 100, "n_train": 50_000, "n_test": 10_000, "teacher_dim": 768,
                 "student_dim": 1024},
}


def config_for(regime: str, scale: str = "small", **overrides) -> SynthConfig:
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose from {sorted(REGIMES)}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; choose from {sorted(SCALES)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(SynthConfig(), **{**REGIMES[regime], **SCALES[scale], **given})


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _class_directions(rng, groups: np.ndarray, dim: int, strength: float) -> np.ndarray:
    """(K, dim) unit class directions; classes of a group share ``strength`` of their direction."""
    shared = _normalise(rng.standard_normal((groups.max() + 1, dim)))
    own = _normalise(rng.standard_normal((len(groups), dim)))
    return _normalise(strength * shared[groups] + np.sqrt(1 - strength**2) * own)


def _mismatched_groups(rng, groups: np.ndarray, fraction: float) -> np.ndarray:
    """Permute group membership among a ``fraction`` of the classes (group sizes kept)."""
    moved = rng.choice(len(groups), size=int(round(fraction * len(groups))), replace=False)
    out = groups.copy()
    out[moved] = groups[rng.permutation(moved)]
    return out


@dataclass
class SynthData:
    teacher_train: np.ndarray  # (N_train, d_T) float32, L2-normalised
    teacher_test: np.ndarray
    student_train: np.ndarray  # (N_train, d_S)
    student_test: np.ndarray
    train_labels: np.ndarray   # (N_train,) int64
    test_labels: np.ndarray
    prototypes: np.ndarray     # (K, d_T)
    classnames: list[str]
    teacher_noise: float
    zero_shot_test: float
    teacher_groups: np.ndarray
    student_groups: np.ndarray


def generate(cfg: SynthConfig) -> SynthData:
    """Draw one benchmark; a pure function of ``cfg`` (its seed included)."""
    rng = np.random.default_rng(cfg.seed)
    k, n = cfg.n_classes, cfg.n_train + cfg.n_test
    teacher_groups = rng.permutation(k) // cfg.group_size
    student_groups = _mismatched_groups(rng, teacher_groups, cfg.confusion_mismatch)
    mu_t = _class_directions(rng, teacher_groups, cfg.teacher_dim, cfg.group_strength)
    mu_s = _class_directions(rng, student_groups, cfg.student_dim, cfg.group_strength)
    labels = np.concatenate([rng.permutation(np.arange(m) % k)  # balanced in each split
                             for m in (cfg.n_train, cfg.n_test)]).astype(np.int64)
    modes = rng.integers(cfg.modes, size=n)

    def space(mu, dim):
        offsets = rng.standard_normal((k, cfg.modes, dim)) * (cfg.mode_spread / np.sqrt(dim))
        centre = (mu[labels] + offsets[labels, modes]).astype(np.float32)
        noise = (rng.standard_normal((n, dim)) / np.sqrt(dim)).astype(np.float32)
        return centre, noise

    centre_t, noise_t = space(mu_t, cfg.teacher_dim)
    centre_s, noise_s = space(mu_s, cfg.student_dim)
    offset = _normalise(rng.standard_normal(cfg.teacher_dim)) * cfg.prototype_offset
    protos = _normalise(mu_t + offset + cfg.prototype_noise *
                        rng.standard_normal((k, cfg.teacher_dim)) / np.sqrt(cfg.teacher_dim))
    protos = protos.astype(np.float32)

    probe = slice(0, min(PROBE_ROWS, cfg.n_train))
    lo, hi = 0.0, 8.0  # accuracy falls as the noise scale grows; bisect for the target
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        acc = zero_shot_accuracy(_normalise(centre_t[probe] + mid * noise_t[probe]),
                                 labels[probe], protos)
        lo, hi = (mid, hi) if acc > cfg.teacher_accuracy else (lo, mid)
    noise_scale = (lo + hi) / 2
    teacher = _normalise(centre_t + noise_scale * noise_t).astype(np.float32)
    student = _normalise(centre_s + cfg.student_noise * noise_s).astype(np.float32)
    tr, te = slice(0, cfg.n_train), slice(cfg.n_train, n)
    return SynthData(
        teacher[tr], teacher[te], student[tr], student[te], labels[tr], labels[te], protos,
        [f"class {c}" for c in range(k)], noise_scale,
        zero_shot_accuracy(teacher[te], labels[te], protos), teacher_groups, student_groups,
    )


def write(data_dir, dataset: str, cfg: SynthConfig, regime: str, teacher_backbone: str,
          student_backbone: str, dtype: str = "float16") -> SynthData:
    """Generate and write teacher/student feature stores and the prototype store."""
    data = generate(cfg)
    attrs = {"synthetic": True, "regime": regime, "synth_config": asdict(cfg),
             "teacher_noise": data.teacher_noise,
             "teacher_zero_shot_accuracy": data.zero_shot_test}
    for backbone, train, test in ((teacher_backbone, data.teacher_train, data.teacher_test),
                                  (student_backbone, data.student_train, data.student_test)):
        write_features(feature_path(data_dir, dataset, backbone), dataset=dataset, backbone=backbone,
                       train=FeatureSplit(train, data.train_labels),
                       test=FeatureSplit(test, data.test_labels),
                       n_classes=cfg.n_classes, dtype=dtype, attrs=attrs)
    write_prototypes(prototype_path(data_dir, dataset, teacher_backbone), data.prototypes,
                     classnames=data.classnames, templates=["{}"], backbone=teacher_backbone,
                     attrs={**attrs, "dataset": dataset})
    return data
