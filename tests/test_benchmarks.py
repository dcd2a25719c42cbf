"""benchmarks/al_speed.py: its helpers, and ``--quick`` end to end as a smoke test.

No timing is asserted anywhere: the numbers depend on the machine. What is checked is that
every section runs, every registered strategy is measured, every library ran on the pinned
thread count, the targets follow from the measured numbers (comparisons that are not like for
like left out), and the JSON and the table hold what benchmarks/README.md says they hold.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ccma.strategies import REGISTRY
from ccma.strategies.base import PoolData, Selection

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "al_speed.py"


@pytest.fixture(scope="module")
def al_speed():
    spec = importlib.util.spec_from_file_location("al_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["al_speed"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules["al_speed"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """One ``--quick`` run, exactly as README.md documents it (plus a private cache and
    one thread, which keeps it steady on a busy machine). The thread variables the tests
    set are dropped, so every library starts on its own default (one per core) and only
    the benchmark's pinning brings it to one."""
    d = tmp_path_factory.mktemp("bench")
    out = d / "result.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--cache-dir", str(d / "cache"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def test_peak_rss_sees_an_allocation(al_speed):
    if not al_speed.memory_supported():
        pytest.skip("peak memory is read from Linux's /proc")
    with al_speed.PeakRSS() as mem:
        block = np.ones(25_000_000)  # 200 MB, every page touched
        del block
    assert 190 <= mem.delta_mb <= 400
    assert mem.peak_mb >= mem.delta_mb


def test_subset_pool_keeps_the_labelled_rows(al_speed):
    n = 50
    pool = PoolData(student=np.arange(n * 3, dtype=np.float32).reshape(n, 3),
                    teacher=np.arange(n * 2, dtype=np.float32).reshape(n, 2),
                    labels=np.arange(n) % 5, rows=np.arange(100, 100 + n),
                    cal_student=np.zeros((5, 3), np.float32), cal_teacher=np.zeros((5, 2), np.float32),
                    cal_labels=np.arange(5), prototypes=np.eye(5, 2, dtype=np.float32), n_classes=5,
                    pool_key="k")
    labeled = np.array([40, 3, 17])
    sub, sub_labeled = al_speed.subset_pool(pool, labeled, 20, np.random.default_rng(0))
    assert len(sub.labels) == 20 and len(np.unique(sub.rows)) == 20
    assert np.all(np.diff(sub.rows) > 0), "pool order is kept"
    np.testing.assert_array_equal(sub.rows[sub_labeled], pool.rows[labeled])
    np.testing.assert_array_equal(sub.student[sub_labeled], pool.student[labeled])
    np.testing.assert_array_equal(sub.teacher, pool.teacher[sub.rows - 100])
    assert sub.pool_key != pool.pool_key, "caches keyed by the pool never mix the two"


def test_overlap_and_phase_timers(al_speed):
    assert al_speed.overlap(np.array([1, 2, 3, 4]), np.array([4, 3, 9, 8])) == 0.5

    class Module:
        @staticmethod
        def work(x):
            time.sleep(0.02)
            return x + 1

    original = Module.work
    with al_speed.phase_timers({"work": (Module, "work")}) as totals:
        assert Module.work(1) == 2 and Module.work(2) == 3
    assert Module.work is original
    assert totals["work"] >= 0.04


def test_quick_run_measures_every_section(quick):
    result, _ = quick
    assert set(result["strategies"]) == set(REGISTRY)
    for name, s in result["strategies"].items():
        assert s["timed_rounds"] >= 1 and s["seconds"] >= 0 and s["first_seconds"] > 0, name

    run = result["ccma_run"]
    assert run["rounds"] == 3 and run["clustering_seconds"] > 0
    parts = ["loading", "training", "clustering", "scoring", "selection"]
    assert all(run[f"{p}_seconds"] >= 0 for p in parts)
    assert sum(run[f"{p}_seconds"] for p in parts) <= run["seconds"] + 1e-6

    scale = result["scale"]
    assert scale["n_pool"] == 20_000 and scale["dtype"] == "float16"
    assert scale["clustering_seconds"] > 0 and scale["query_seconds"] > 0
    assert scale["kmeans_training_points"] <= scale["n_pool"]

    assert result["dataset"]["n_pool"] == 1900 and result["dataset"]["budget"] == 10
    assert result["student"]["n_labeled"] == 50


def test_quick_run_targets_follow_from_the_numbers(quick, al_speed):
    """Each target's number is recomputed from the sections it summarises, and ``met`` from
    that number and the goal; a comparison that is not like for like has no verdict."""
    result, stdout = quick
    compared = {c["strategy"]: c for c in result["comparisons"]}
    peaks = [s["peak_rss_mb"] for s in result["strategies"].values()] + [result["ccma_run"]["peak_rss_mb"]]
    expected = {
        "ccma_query_s": result["strategies"]["ccma"]["seconds"],
        "peak_mb": max(peaks),
        "ccma_run_s": result["ccma_run"]["seconds"],
        "scale_query_s": result["scale"]["query_seconds"],
        "scale_peak_mb": result["scale"]["query_peak_rss_mb"],
        **{f"peer_ratio:{name}": c["peer_seconds"] / c["ours_seconds"] for name, c in compared.items()},
    }
    targets = {t["key"]: t for t in result["targets"]}
    assert len(targets) == len(result["targets"]) and set(targets) == set(expected)
    verdicts = 0
    for key, measured in expected.items():
        t, kind = targets[key], key.split(":")[0]
        assert t["measured"] == pytest.approx(measured), key
        goal = al_speed.TARGETS[kind]
        left_out = kind == "peer_ratio" and not compared[key.split(":")[1]]["like_for_like"]
        assert bool(t["excluded"]) == left_out, key
        if left_out:
            assert t["met"] is None and t["excluded"] == "; ".join(compared[key.split(":")[1]]["unlike"])
        else:
            assert t["met"] is (measured >= goal if kind == "peer_ratio" else measured <= goal), key
            verdicts += kind == "peer_ratio"
    assert verdicts >= 4, "the full-pool uncertainty, entropy, margins and coreset peers are judged"
    assert stdout.count("not like for like, left out") == sum(not c["like_for_like"] for c in compared.values())


def test_quick_run_flags_comparisons_that_are_not_like_for_like(quick):
    result, _ = quick
    n_full = result["dataset"]["n_pool"]
    compared = {c["strategy"]: c for c in result["comparisons"]}
    for name, c in compared.items():
        assert c["like_for_like"] == (not c["unlike"]), name
        assert (c["n_pool"] < n_full) == any("subset" in r for r in c["unlike"]), name
    for name in ("uncertainty", "entropy", "margins", "coreset", "bald", "powerbald"):
        assert compared[name]["like_for_like"], (name, compared[name]["unlike"])
    assert any("MaxHerding stands in for UHerding" in r for r in compared["uherding"]["unlike"])
    assert any("grid" in r for r in compared["probcover"]["unlike"])
    assert not compared["random"]["like_for_like"]
    assert not compared["badge"]["like_for_like"], "timed on a 500-point subset only"


def test_quick_run_pins_and_records_every_librarys_threads(quick):
    result, stdout = quick
    meta = result["meta"]["threads"]
    assert meta["pinned"] == 1
    libraries = meta["libraries"]
    assert {"torch", "faiss"} <= set(libraries)
    assert any(k.startswith("openblas numpy") for k in libraries), "numpy's BLAS"
    assert any(k.startswith("openblas scipy") for k in libraries), "scipy's BLAS (the peers')"
    assert any(k.startswith("openmp ") for k in libraries)
    records = [libraries, result["ccma_run"]["threads"], result["scale"]["threads"],
               *(s["threads"] for s in result["strategies"].values()),
               *(side for c in result["comparisons"] for side in c["threads"].values())]
    for counts in records:
        assert {"torch", "faiss"} <= set(counts) and set(counts.values()) == {1}, counts
    assert "Threads: every library pinned to 1;" in stdout and "none ran off it" in stdout


def test_unlike_reasons(al_speed):
    """Other cluster counts, a subset and a library off the pin each make a reason."""
    n = 50
    pool = PoolData(student=np.zeros((n, 3), np.float32), teacher=np.zeros((n, 2), np.float32),
                    labels=np.arange(n) % 5, rows=np.arange(n), cal_student=np.zeros((5, 3), np.float32),
                    cal_teacher=np.zeros((5, 2), np.float32), cal_labels=np.arange(5),
                    prototypes=np.eye(5, 2, dtype=np.float32), n_classes=5)
    setup = al_speed.Setup(pool, labeled=np.arange(30), student=None, budget=10)  # peer: 40 clusters
    peer, on_pin = al_speed.PEERS["typiclust"], {"ours": {"torch": 1}, "peer": {"torch": 1}}

    def reasons(ours_clusters, n_full, threads=on_pin):
        return al_speed.unlike_reasons(peer, setup, Selection(np.arange(10), None, {
            "typiclust_clusters": ours_clusters}), n_full, threads, pinned=1)

    assert reasons(40, n) == []
    assert reasons(25, n) == ["25 k-means clusters (ours) vs 40 (peer)"]
    assert reasons(40, 2 * n) == ["both sides on a 50-point subset of the 100-point pool"]
    off = {"ours": {"torch": 1}, "peer": {"torch": 1, "openmp libgomp.so": 2}}
    assert reasons(40, n, off) == ["peer not on 1 threads: {'openmp libgomp.so': 2}"]
    assert al_speed.unlike_reasons(al_speed.PEERS["uncertainty"], setup, Selection(np.arange(10)),
                                   n, on_pin, 1) == []


def test_quick_run_compares_with_the_peers(quick, al_speed):
    result, _ = quick
    compared = {c["strategy"]: c for c in result["comparisons"]}
    assert set(compared) == set(al_speed.PEERS) & set(REGISTRY)
    for name, c in compared.items():
        assert c["peer_seconds"] > 0 and c["n_pool"] <= result["dataset"]["n_pool"], name
        if c["deterministic"]:
            # the same student, features and labelled set: the same batch (a tie broken the
            # other way at the b-th place could cost one point)
            assert c["overlap"] >= 0.9, (name, c["overlap"])
    assert compared["badge"]["n_pool"] == 500, "memory-bound peers run on a subset"


def test_quick_run_prints_the_table_last(quick):
    _, stdout = quick
    lines = stdout.rstrip().splitlines()
    header = max(i for i, line in enumerate(lines) if line.startswith("strategy "))
    rows = [line.split()[0] for line in lines[header + 2:]]
    assert set(rows) == set(REGISTRY)
    assert "Targets (reported, not asserted; comparisons that are not like for like" in stdout
