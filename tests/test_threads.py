"""Nothing a run selects or records depends on the number of CPU threads.

Every registered strategy (CCMA also with the reference-code preset and as V3) runs under one
and under two threads, set as ``ccma run --threads`` sets them, each thread count in a fresh
process (thread settings stay with a process) on its own copy of the data (neither reads the
other's k-means cache). The pool has 3,000 points in exact twin pairs and CCMA clusters it
into 500 clusters: before k-means computed its distances pairwise, the reference-code preset's
re-clustered subpool (and with it the batch) changed with the thread count.
"""

from __future__ import annotations

import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

from ccma.features import FeatureSplit, feature_path, prototype_path, write_features, write_prototypes
from ccma.geometry import kmeans
from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER
from ccma.splits import make_splits, save_splits, split_path
from ccma.strategies import REGISTRY
from ccma.synth import config_for, generate

from conftest import TINY

THREADS = (1, 2)
SUBPOOL = {"subpool_size": 500}  # M < |U|: CCMA clusters the pool (V3: draws from it)
RUNS = {  # run name -> (strategy, parameters)
    **{name: (name, {}) for name in sorted(REGISTRY) if name != "ccma"},
    "ccma": ("ccma", SUBPOOL),
    "ccma-reference-code": ("ccma", {**SUBPOOL, "preset": "reference-code"}),
    "ccma-V3": ("ccma", {**SUBPOOL, "variant": "V3"}),
}
TIMINGS = ["train_seconds", "query_seconds"]


def write_twins(data_dir, n_train: int = 3100) -> None:
    """The synthetic dataset 'syn' (K = 10, 3,000 pool points after calibration) in which
    every odd train row is an exact copy of the row before it, in both spaces and label:
    every score, distance and kernel value of a point ties exactly with its twin's, the
    ties that duplicates in real data bring, only many."""
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


def on_threads(data_dir, threads: int) -> tuple[dict[str, pd.DataFrame], np.ndarray]:
    """In a fresh process: every run of ``RUNS`` for 3 rounds on ``threads`` threads, its
    record without the timings; and a product of the student's size
    (500 x 1,024 by 1,024 x 100), whose inner sums MKL would split across threads."""
    import torch

    from ccma.cli import set_threads
    from ccma.loop import RunConfig, run
    from ccma.student import StudentConfig

    set_threads(threads)
    records = {}
    for name, (strategy, params) in RUNS.items():
        cfg = RunConfig(data_dir, "syn", strategy, seed=0, rounds=3, params=params, name=name,
                        student=StudentConfig(max_epochs=30))
        df = pd.read_parquet(run(cfg, progress=False, log=lambda *_: None)).drop(columns=TIMINGS)
        df["queried"] = df["queried"].map(tuple)
        records[name] = df
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 1024, generator=gen), torch.randn(100, 1024, generator=gen)
    return records, (a @ b.T).numpy()


@pytest.fixture(scope="module")
def by_threads(tmp_path_factory):
    """{threads: on_threads(...)}, one fresh process and data copy per thread count."""
    base = tmp_path_factory.mktemp("threads")
    write_twins(base / "data")
    out = {}
    for threads in THREADS:
        data_dir = base / f"data{threads}"
        shutil.copytree(base / "data", data_dir)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            out[threads] = pool.submit(on_threads, data_dir, threads).result()
    return out


def test_registry_is_covered():
    assert {strategy for strategy, _ in RUNS.values()} == set(REGISTRY)


def test_kmeans_does_not_depend_on_threads():
    """300 clusters (not a multiple of 8): faiss's threaded BLAS product used to round some
    distances differently on two threads (23 of the 3,000 here)."""
    import faiss

    x = np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32)
    saved = faiss.omp_get_max_threads()
    try:
        out = {}
        for threads in THREADS:
            faiss.omp_set_num_threads(threads)
            out[threads] = kmeans(x, 300, seed=3, niter=10)
    finally:
        faiss.omp_set_num_threads(saved)
    for one, two in zip(out[1], out[2]):
        np.testing.assert_array_equal(one, two)
    centroids, assign, dist = out[1]
    exact = ((x[:, None, :].astype(np.float64) - centroids[None].astype(np.float64)) ** 2).sum(-1)
    np.testing.assert_array_equal(assign, exact.argmin(1))
    np.testing.assert_allclose(dist, exact[np.arange(len(x)), assign], rtol=1e-5, atol=1e-6)


def test_products_do_not_depend_on_threads(by_threads):
    np.testing.assert_array_equal(by_threads[1][1], by_threads[2][1])


@pytest.mark.parametrize("name", list(RUNS))
def test_run_does_not_depend_on_threads(by_threads, name):
    one, two = by_threads[1][0][name], by_threads[2][0][name]
    assert one["queried"].map(len).tolist() == [10, 10, 0]
    assert one["queried"].tolist() == two["queried"].tolist(), f"{name}: other points on 2 threads"
    differ = [c for c in one.columns if not one[c].equals(two[c])]
    assert not differ, f"{name}: {differ} differ between 1 and 2 threads"
