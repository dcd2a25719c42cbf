"""Selections do not depend on the CPU thread count: every registered strategy, run under one
and under two threads (set as ``ccma run --threads`` sets them), queries the same points.

Each thread count runs in its own process (thread settings stay with the process) on its own
copy of the data, so neither reads the other's k-means cache. The pool (3,000 points) is
clustered into 600 k-means clusters for CCMA's subpool: at that size the clusters' nearest
points come in near ties that multi-threaded distance sums used to break differently.
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from ccma.features import FeatureSplit, feature_path, prototype_path, write_features, write_prototypes
from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER
from ccma.splits import make_splits, save_splits, split_path
from ccma.strategies import REGISTRY
from ccma.synth import config_for, generate

from conftest import TINY

SUBPOOL = {"subpool_size": 600}  # M < |U|: CCMA clusters the pool (or draws from it, V3)
RUNS = {  # run name -> (strategy, parameters)
    **{name: (name, {}) for name in sorted(REGISTRY) if name != "ccma"},
    "ccma": ("ccma", SUBPOOL),
    "ccma-reference-code": ("ccma", {**SUBPOOL, "preset": "reference-code"}),
    "ccma-V3": ("ccma", {**SUBPOOL, "variant": "V3"}),
}


def selections(data_dir, threads: int) -> dict[str, list[list[int]]]:
    """Every run of ``RUNS`` for 3 rounds (2 queries) on ``threads`` threads: its queried rows."""
    import pandas as pd

    from ccma.cli import set_threads
    from ccma.loop import RunConfig, run

    set_threads(threads)
    out = {}
    for name, (strategy, params) in RUNS.items():
        path = run(RunConfig(data_dir, "syn", strategy, seed=0, rounds=3, params=params, name=name),
                   progress=False, log=lambda *_: None)
        out[name] = [list(map(int, q)) for q in pd.read_parquet(path)["queried"]]
    return out


def write_twins(data_dir, n_train: int = 3100) -> None:
    """The synthetic dataset 'syn' (K = 10, 3,000 pool points after calibration) in which
    every odd train row is an exact copy of the row before it, in both spaces and label:
    every score, distance and kernel value of a point ties exactly with its twin's, the
    near ties real data (duplicates, near-duplicates) has, only many."""
    cfg = config_for("mismatch", "small", **{**TINY, "n_train": n_train, "teacher_dim": 64,
                                              "student_dim": 96})
    data = generate(cfg)
    twin = np.arange(n_train) // 2 * 2
    for backbone, train, test in ((DEFAULT_TEACHER, data.teacher_train, data.teacher_test),
                                  (DEFAULT_STUDENT, data.student_train, data.student_test)):
        write_features(feature_path(data_dir, "syn", backbone), dataset="syn", backbone=backbone,
                       train=FeatureSplit(train[twin], data.train_labels[twin]),
                       test=FeatureSplit(test, data.test_labels), n_classes=cfg.n_classes)
    write_prototypes(prototype_path(data_dir, "syn", DEFAULT_TEACHER), data.prototypes,
                     classnames=data.classnames, templates=["{}"], backbone=DEFAULT_TEACHER)
    save_splits(split_path(data_dir, "syn"),
                make_splits(data.train_labels[twin], len(data.test_labels), per_class=10, seed=0))


@pytest.fixture(scope="module")
def by_threads(tmp_path_factory):
    """{threads: selections} for 1 and 2 threads, each in a fresh process on its own data."""
    base = tmp_path_factory.mktemp("threads")
    write_twins(base / "data")
    dirs = {}
    for threads in (1, 2):
        dirs[threads] = base / f"data{threads}"
        shutil.copytree(base / "data", dirs[threads])
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {t: pool.submit(selections, d, t) for t, d in dirs.items()}
        return {t: f.result() for t, f in futures.items()}


def test_registry_is_covered():
    assert {strategy for strategy, _ in RUNS.values()} == set(REGISTRY)


@pytest.mark.parametrize("name", list(RUNS))
def test_selections_do_not_depend_on_threads(by_threads, name):
    one, two = by_threads[1][name], by_threads[2][name]
    assert [len(q) for q in one] == [10, 10, 0]
    assert one == two, f"{name}: rounds differ under 1 and 2 threads"
