"""Shared fixtures: a small synthetic dataset written through the real CLI code paths."""

from __future__ import annotations

import os

import numpy as np
import pytest

# One BLAS/OpenMP thread: tests run tiny tensors, where thread hand-offs cost more than they
# save, and CI may share the machine's two cores with other work.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may wait on the network
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from ccma.features import feature_path  # noqa: E402
from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER  # noqa: E402
from ccma.splits import make_splits, save_splits, split_path  # noqa: E402
from ccma.synth import config_for, write  # noqa: E402

TINY = dict(n_classes=10, n_train=800, n_test=300, teacher_dim=32, student_dim=48)


def make_synthetic(data_dir, dataset="syn", regime="mismatch", **overrides):
    """Write a synthetic dataset (stores + splits) under ``data_dir``; returns the SynthData."""
    cfg = config_for(regime, "small", **{**TINY, **overrides})
    data = write(data_dir, dataset, cfg, regime, DEFAULT_TEACHER, DEFAULT_STUDENT)
    splits = make_splits(data.train_labels, len(data.test_labels), per_class=10, seed=0)
    save_splits(split_path(data_dir, dataset), splits)
    assert feature_path(data_dir, dataset, DEFAULT_TEACHER).exists()
    return data


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory):
    """A read-only tiny synthetic dataset 'syn' (K=10, 800 train, 300 test). Do not write runs
    here: copy it (``tmp_synth_dir``) for tests that run the loop."""
    d = tmp_path_factory.mktemp("synth")
    make_synthetic(d)
    return d


@pytest.fixture
def tmp_synth_dir(synth_dir, tmp_path):
    import shutil

    dst = tmp_path / "data"
    shutil.copytree(synth_dir, dst)
    return dst


@pytest.fixture
def rng():
    return np.random.default_rng(0)
