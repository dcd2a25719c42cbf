"""The fast implementations of the heavy baselines select what the plain ones selected.

``tests/data/speedups_expected.json`` holds the picks of three rounds of each strategy on a
fixed synthetic pool, written by the implementations before they were made fast (run this file
as a script to rewrite it; only ever do so with an implementation known to be right).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from ccma.strategies import REGISTRY, QueryContext, probcover
from ccma.strategies.base import PoolData
from ccma.student import StudentConfig, train_student
from ccma.synth import config_for, generate

EXPECTED = Path(__file__).parent / "data" / "speedups_expected.json"
STRATEGIES = ("alfamix", "uherding", "probcover", "bald", "powerbald")
ROUNDS, BUDGET, INITIAL = 3, 20, 40
FAST = StudentConfig(max_epochs=60, patience=5, device="cpu")


def synthetic_pool() -> PoolData:
    """3,000 rows, K = 20, d_S = 96: big enough for every strategy's blocks and ties to matter."""
    data = generate(config_for("mismatch", "small"))
    n = len(data.train_labels)
    return PoolData(student=data.student_train, teacher=data.teacher_train,
                    labels=data.train_labels, rows=np.arange(n), cal_student=data.student_test,
                    cal_teacher=data.teacher_test, cal_labels=data.test_labels,
                    prototypes=data.prototypes, n_classes=len(data.classnames), pool_key="speedups")


def selections(name: str, pool: PoolData, tmp: Path) -> list[list[int]]:
    """The picks of ``ROUNDS`` rounds of ``name`` from a seeded random start, a fresh student
    (seeded) each round, as the loop does."""
    labeled = np.random.default_rng(7).choice(len(pool.labels), INITIAL, replace=False)
    picks = []
    for round_ in range(1, ROUNDS + 1):
        student = train_student(pool.student[labeled], pool.labels[labeled], pool.n_classes,
                                FAST, seed=round_)
        ctx = QueryContext(data=pool, labeled=labeled, student=student,
                           params=REGISTRY[name].effective({}), seed=1, round=round_,
                           device=torch.device("cpu"), cache_dir=tmp)
        sel = REGISTRY[name].query(ctx, BUDGET, np.random.default_rng(100 + round_))
        picks.append([int(i) for i in sel.indices])
        labeled = np.concatenate([labeled, sel.indices])
    return picks


@pytest.fixture(scope="module")
def pool():
    return synthetic_pool()


@pytest.mark.parametrize("name", STRATEGIES)
def test_selections_equal_the_plain_implementation(name, pool, tmp_path):
    expected = json.loads(EXPECTED.read_text())[name]
    assert selections(name, pool, tmp_path) == expected


# ---------------------------------------------------------------- ProbCover's per-run cache

def probcover_context(pool: PoolData, labeled, cache_dir) -> QueryContext:
    return QueryContext(data=pool, labeled=np.asarray(labeled, dtype=np.int64), student=None,
                        params=REGISTRY["probcover"].effective({}), seed=1, round=1,
                        device=torch.device("cpu"), cache_dir=cache_dir)


def test_probcover_builds_its_graph_once_per_run(pool, tmp_path, monkeypatch):
    small = replace(pool, student=pool.student[:400], labels=pool.labels[:400], rows=np.arange(400))
    first = probcover.pool_graph(probcover_context(small, [0, 1], tmp_path))
    cold = probcover.pool_graph(probcover_context(small, [0, 1], None))
    assert first[0] == cold[0] and (first[1] != cold[1]).nnz == 0

    def no_rebuild(*_):
        raise AssertionError("the cached ball graph was rebuilt")

    monkeypatch.setattr(probcover, "ball_graph", no_rebuild)
    # another round (another labelled set) reads the same delta and graph
    again = probcover.pool_graph(probcover_context(small, [5, 6, 7], tmp_path))
    assert again[0] == first[0] and (again[1] != first[1]).nnz == 0
    # other features of the same pool (another student backbone) are never served the cache
    other = replace(small, student=small.student[::-1].copy())
    with pytest.raises(AssertionError, match="rebuilt"):
        probcover.pool_graph(probcover_context(other, [0, 1], tmp_path))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        p = synthetic_pool()
        EXPECTED.parent.mkdir(exist_ok=True)
        EXPECTED.write_text(json.dumps({n: selections(n, p, Path(tmp)) for n in STRATEGIES}) + "\n")
