"""Every strategy's declaration without its code: its hyper-parameters, whether it needs a
trained student and (CCMA) how given parameters resolve. Nothing here imports torch, so the
command line lists the options at once and a finished run is recognised without loading a
strategy; ``base.get_strategy`` imports ``ccma.strategies.NAME`` only when a query runs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

from ..conformal import NONCONFORMITY
from ..parameters import RANGES
from ..settings import PRESETS, SCORES, SUBPOOLS, VARIANTS, CCMAParams, resolve_params


@dataclass(frozen=True)
class Param:
    name: str          # python name; the CLI flag is --name-with-dashes
    default: Any
    help: str
    type: Callable = float
    choices: tuple | None = None

    @property
    def range(self):
        """The allowed values of a numeric parameter (None for the others)."""
        return RANGES.get(self.name)


# ---------------------------------------------------------------- CCMA

_CHOICES = {
    "calibration": ("size", "coverage"), "calibrate_on": ("calibration", "subpool"),
    "nonconformity": NONCONFORMITY, "empty_set": ("union", "top1"),
    "subpool": SUBPOOLS, "final_selection": ("coverage", "kmeans"),
    "kernel_space": ("teacher", "student"), "score": SCORES,
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


CCMA_PARAMS = (
    Param("preset", "paper", "CCMA: preset (paper text or published code)", str, tuple(PRESETS)),
    Param("variant", "V1", "CCMA: ablation variant of the paper's Table 2", str, tuple(VARIANTS)),
    *(_param(f) for f in fields(CCMAParams)),
)


def resolve_ccma(params: dict) -> dict:
    """The effective parameters: preset, then variant, then explicit values."""
    overrides = {k: v for k, v in params.items() if k not in ("preset", "variant")}
    resolved = resolve_params(params.get("preset", "paper"), params.get("variant", "V1"), **overrides)
    return {"preset": params.get("preset", "paper"), "variant": params.get("variant", "V1"),
            **asdict(resolved)}


# ---------------------------------------------------------------- baselines

ALPHA_MODES = ("learned", "closed-form")
ALFAMIX_PARAMS = (
    Param("alfamix_alpha", "learned", "Alfa-mix: how alpha is found", str, ALPHA_MODES),
    Param("alfamix_cap", 1 / 32, "Alfa-mix: first cap on alpha and the step it grows by"),
    Param("alfamix_steps", 5, "Alfa-mix: Adam steps of the learned alpha", int),
    Param("alfamix_lr", 0.1, "Alfa-mix: Adam learning rate of the learned alpha"),
    Param("alfamix_l2", 0.01, "Alfa-mix: weight of ||alpha|| in the learned-alpha loss"),
)
MC_PASSES = Param("mc_passes", 20, "BALD/PowerBALD: Monte-Carlo dropout passes R", int)
POWER_BETA = Param("power_beta", 1.0, "PowerBALD: exponent beta of the sampling weights BALD^beta")
PROBCOVER_PARAMS = (
    Param("probcover_purity", 0.95, "ProbCover: ball purity alpha that sets delta"),
    Param("probcover_delta", None, "ProbCover: fixed ball radius delta (unset: estimated from "
                                   "--probcover-purity)"),
)
TYPICLUST_PARAMS = (
    Param("typiclust_max_clusters", 500, "TypiClust: most k-means clusters", int),
    Param("typiclust_knn", 20, "TypiClust: neighbours in the typicality estimate", int),
    Param("typiclust_min_size", 5, "TypiClust: clusters of at most this size are skipped", int),
)
UHERDING_PARAMS = (
    Param("uherding_val_fraction", 0.3,
          "UHerding: share of the labelled set (the latest) held out to fit the temperature"),
)


@dataclass(frozen=True)
class Declaration:
    params: tuple[Param, ...] = ()
    needs_student: bool = True                     # cannot pick a batch before a student is trained
    resolve: Callable[[dict], dict] | None = None  # given params -> effective params


# name -> declaration; the module ccma.strategies.NAME registers the query (``base.register``)
CATALOGUE = {
    "random": Declaration(needs_student=False),
    "ccma": Declaration(CCMA_PARAMS, needs_student=False, resolve=resolve_ccma),
    "uncertainty": Declaration(),
    "entropy": Declaration(),
    "margins": Declaration(),
    "bald": Declaration((MC_PASSES,)),
    "powerbald": Declaration((MC_PASSES, POWER_BETA)),
    "badge": Declaration(),
    "alfamix": Declaration(ALFAMIX_PARAMS),
    "coreset": Declaration(needs_student=False),
    "typiclust": Declaration(TYPICLUST_PARAMS, needs_student=False),
    "probcover": Declaration(PROBCOVER_PARAMS, needs_student=False),
    "uherding": Declaration(UHERDING_PARAMS),
}
