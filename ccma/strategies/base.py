"""The strategy interface and registry.

A strategy is a function ``query(ctx, budget, rng) -> Selection`` that returns ``budget``
distinct positions of still-unlabelled pool rows. Its hyper-parameters are declared as
``Param``s in ``catalogue`` so that the CLI lists them (with defaults and ranges) and the run
record hashes them without importing torch; the range of a numeric one is its entry in
``ccma.parameters.RANGES``. ``REGISTRY`` holds every catalogued strategy; its query code is
imported on first use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import CCMAError
from ..parameters import RANGES, check
from .catalogue import CATALOGUE, Param

if TYPE_CHECKING:  # annotations only: importing torch takes seconds
    import torch

    from ..student import Student


@dataclass
class PoolData:
    """Everything a strategy may look at, in pool order (positions 0..N_pool-1)."""

    student: np.ndarray          # (N_pool, d_S) student backbone features h(x)
    teacher: np.ndarray          # (N_pool, d_T) teacher image embeddings z_T(x)
    labels: np.ndarray           # (N_pool,) oracle labels: read only at labelled positions
    rows: np.ndarray             # (N_pool,) train-row index of each position
    cal_student: np.ndarray      # (N_cal, d_S) calibration split
    cal_teacher: np.ndarray      # (N_cal, d_T)
    cal_labels: np.ndarray       # (N_cal,)
    prototypes: np.ndarray       # (K, d_T)
    n_classes: int
    pool_key: str = ""           # identifies the pool (hash of ``rows``) for on-disk caches


@dataclass
class QueryContext:
    data: PoolData
    labeled: np.ndarray            # positions in acquisition order
    student: Student | None        # trained this round; None on a cold start with init=strategy
    params: dict                   # this strategy's resolved parameters
    seed: int
    round: int
    device: torch.device
    cache_dir: Path | None = None  # for per-(dataset, seed) caches such as k-means
    # (N_pool,) bool: the positions a strategy may choose; None: every position not in
    # ``labeled`` (a labelling session also excludes images a person skipped)
    selectable: np.ndarray | None = field(default=None, repr=False)

    @property
    def unlabeled_mask(self) -> np.ndarray:
        """(N_pool,) bool, True where a strategy may choose (not yet labelled)."""
        if self.selectable is None:
            mask = np.ones(len(self.data.labels), dtype=bool)
            mask[self.labeled] = False
            self.selectable = mask
        return self.selectable

    @property
    def unlabeled(self) -> np.ndarray:
        """Sorted positions of unlabelled rows."""
        return np.flatnonzero(self.unlabeled_mask)

    @property
    def labeled_labels(self) -> np.ndarray:
        return self.data.labels[self.labeled]


@dataclass
class Selection:
    indices: np.ndarray                       # positions into the pool, len == budget, distinct
    fallback: str | None = None               # what deviated from the published algorithm, if anything
    diagnostics: dict = field(default_factory=dict)


QueryFn = Callable[[QueryContext, int, np.random.Generator], Selection]


@dataclass(frozen=True)
class Code:
    """What a strategy's module registers: its query and, optionally, its diagnostics."""

    query: QueryFn
    diagnose: Callable[[QueryContext], dict] | None = None  # diagnostics without querying


_CODE: dict[str, Code] = {}


@dataclass(frozen=True)
class Strategy:
    name: str
    params: tuple[Param, ...] = ()
    needs_student: bool = True     # cannot pick a batch before a student is trained
    resolve: Callable[[dict], dict] | None = None           # given params -> effective params

    @property
    def code(self) -> Code:
        """The query code, from ``ccma.strategies.NAME`` (imported here on first use)."""
        if self.name not in _CODE:
            import_module(f"{__package__}.{self.name}")
        return _CODE[self.name]

    @property
    def query(self) -> QueryFn:
        return self.code.query

    @property
    def diagnose(self) -> Callable[[QueryContext], dict] | None:
        return self.code.diagnose

    def effective(self, given: dict) -> dict:
        """Defaults overlaid with ``given`` (None = not given), then the strategy's resolver;
        a value outside its range is a CCMAError naming the option."""
        params = {**self.defaults(), **{k: v for k, v in given.items() if v is not None}}
        params = self.resolve(params) if self.resolve else params
        for name, value in params.items():
            if name in RANGES:
                check(name, value)
        return params

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}


REGISTRY: dict[str, Strategy] = {name: Strategy(name, d.params, d.needs_student, d.resolve)
                                 for name, d in CATALOGUE.items()}


def register(name: str, *, diagnose=None):
    """Decorator: ``query`` is the code of the catalogued strategy ``name``."""

    def wrap(fn: QueryFn) -> QueryFn:
        if name not in CATALOGUE:
            raise ValueError(f"strategy {name!r} is not declared in ccma.strategies.catalogue")
        if name in _CODE:
            raise ValueError(f"strategy {name!r} registered twice")
        _CODE[name] = Code(fn, diagnose)
        return fn

    return wrap


def get_strategy(name: str) -> Strategy:
    if name not in REGISTRY:
        raise CCMAError(f"--strategy: unknown strategy {name!r}; choose from {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def random_fill(chosen: np.ndarray, ctx: QueryContext, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Top up ``chosen`` to ``budget`` with distinct unlabelled positions drawn uniformly."""
    chosen = np.asarray(chosen, dtype=np.int64)
    need = budget - len(chosen)
    if need <= 0:
        return chosen[:budget]
    rest = np.setdiff1d(ctx.unlabeled, chosen)
    return np.concatenate([chosen, rng.choice(rest, size=need, replace=False)])
