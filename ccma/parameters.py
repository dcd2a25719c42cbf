"""The range of every numeric option, in one table: the CLI (its help and checks), the run
(``ccma.loop.check_options``) and the workflow's params.yaml schema all follow it (a test
holds the schema to it). Types live with the declarations (``Param.type``, the defaults of
``StudentConfig`` and ``CCMAParams``); a value outside its range is a one-line error naming
the option, raised before any data is read or anything written.

This module imports nothing heavy, so the CLI can read it while it builds its parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CCMAError


class ParameterError(CCMAError, ValueError):
    """An option's value outside its range (a ValueError too, as the strategies' own checks)."""


@dataclass(frozen=True)
class Range:
    """low <= v <= high (strict where ``*_open``); None: unbounded. ``words`` are strings
    accepted besides numbers (sigma's ``median``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    words: tuple[str, ...] = ()

    def __contains__(self, v) -> bool:
        if v in self.words:
            return True
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:  # v != v: NaN
            return False
        lo = self.low is None or (v > self.low if self.low_open else v >= self.low)
        hi = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return lo and hi

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            text = (f"in {'(' if self.low_open else '['}{_num(self.low)}, "
                    f"{_num(self.high)}{')' if self.high_open else ']'}")
        elif self.low is not None:
            text = f"{'>' if self.low_open else '>='} {_num(self.low)}"
        else:
            text = f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return " or ".join([*self.words, f"a number {text}" if self.words else text])

    def schema(self) -> dict:
        """The JSON-schema keywords of the numeric part (params.schema.yaml writes these)."""
        out = {}
        if self.low is not None:
            out["exclusiveMinimum" if self.low_open else "minimum"] = self.low
        if self.high is not None:
            out["exclusiveMaximum" if self.high_open else "maximum"] = self.high
        return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


POSITIVE, AT_LEAST_1, NON_NEGATIVE = Range(0, low_open=True), Range(1), Range(0)

RANGES: dict[str, Range] = {
    # the AL protocol and the commands around it
    "seed": NON_NEGATIVE, "rounds": AT_LEAST_1,
    "budget": NON_NEGATIVE,  # 0 means b = K
    "threads": AT_LEAST_1, "calibration_per_class": AT_LEAST_1, "split_seed": NON_NEGATIVE,
    # the student (StudentConfig)
    "dropout": Range(0, 1, high_open=True), "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
    "batch_size": AT_LEAST_1, "max_epochs": AT_LEAST_1, "patience": AT_LEAST_1,
    "min_delta": NON_NEGATIVE,
    # CCMA (CCMAParams); k_teacher and k_student are also at most K, known once data is read
    "tau": POSITIVE, "k_teacher": POSITIVE, "k_student": POSITIVE,
    "alpha": Range(0, 1, low_open=True, high_open=True), "subpool_size": AT_LEAST_1,
    "per_cluster": AT_LEAST_1, "kmeans_iters": AT_LEAST_1, "kappa": AT_LEAST_1,
    "sigma": Range(0, low_open=True, words=("median",)),
    # the baselines' Params
    "mc_passes": AT_LEAST_1, "power_beta": POSITIVE,
    "alfamix_cap": Range(0, 1, low_open=True), "alfamix_steps": AT_LEAST_1, "alfamix_lr": POSITIVE,
    "alfamix_l2": NON_NEGATIVE,
    "typiclust_max_clusters": AT_LEAST_1, "typiclust_knn": AT_LEAST_1, "typiclust_min_size": NON_NEGATIVE,
    "probcover_purity": Range(0, 1, low_open=True), "probcover_delta": POSITIVE,
    "uherding_val_fraction": Range(0, 1, low_open=True, high_open=True),
}

# torch devices the options accept (params.schema.yaml's device pattern)
DEVICE_PATTERN = "^(auto|cpu|cuda(:[0-9]+)?|mps)$"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def number(name: str, value):
    """``value`` as RANGES[name] accepts it: a word kept, a numeric string converted."""
    if isinstance(value, str) and value not in RANGES[name].words:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check(name: str, value) -> None:
    """ParameterError '--name must be <range>, got <value>' unless ``value`` is in
    RANGES[name]; None (not given) passes."""
    if value is not None and number(name, value) not in RANGES[name]:
        raise ParameterError(f"{flag(name)} must be {RANGES[name]}, got {value!r}")


def check_device(text: str, option: str = "--device") -> str:
    """``text`` when it names a torch device this machine has, else a one-line CCMAError."""
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise CCMAError(f"{option} must be auto, cpu, cuda, cuda:N or mps, got {text!r}")
    if text in ("auto", "cpu"):
        return text  # always there: no need to import torch (seconds) to know it
    import torch

    if text.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(text.partition(":")[2] or 0)
        if index >= n:
            have = f"only {n} CUDA device(s)" if n else "no CUDA GPU (torch.cuda.is_available() is False)"
            raise CCMAError(f"{option} {text}: this machine has {have}; use {option} cpu or auto")
    if text == "mps" and not torch.backends.mps.is_available():
        raise CCMAError(f"{option} mps: this machine has no MPS device; use {option} cpu or auto")
    return text
