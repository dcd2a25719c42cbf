"""benchmarks/al_speed.py: its helpers, and ``--quick`` end to end as a smoke test.

No timing is asserted anywhere: the numbers depend on the machine. What is checked is that
every section runs, every registered strategy is measured, and the JSON and the table hold
what benchmarks/README.md says they hold.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ccma.strategies import REGISTRY
from ccma.strategies.base import PoolData

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
    one thread, which keeps it steady on a busy machine)."""
    d = tmp_path_factory.mktemp("bench")
    out = d / "result.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--threads", "1", "--cache-dir", str(d / "cache"),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
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
    assert {t["met"] for t in result["targets"]} <= {True, False, None}


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
    assert "Targets (reported, not asserted):" in stdout
