"""Pool / calibration / test splits (docs/method.md §1, §13).

``splits/{dataset}.npz`` holds three index arrays: ``pool`` and ``calibration`` index rows
of the feature store's train split, ``test`` rows of its test split. The calibration split
is a stratified hold-out drawn with a *split seed* that does not change with the AL seed.
The file also records the dataset it was made for and that store's row counts, so that a
run never reads another dataset's splits (files written without them are still read).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import save_npz
from .errors import CCMAError, StoreError


def split_path(data_dir, dataset: str) -> Path:
    return Path(data_dir) / "splits" / f"{dataset}.npz"


@dataclass(frozen=True)
class Splits:
    pool: np.ndarray         # (N_pool,) int64 train-row indices, sorted
    calibration: np.ndarray  # (N_cal,) int64 train-row indices, sorted
    test: np.ndarray         # (N_test,) int64 test-row indices
    dataset: str | None = None   # what they were made for (None: not recorded)
    n_train: int | None = None   # rows of that feature store's train split
    n_test: int | None = None    # rows of its test split


def make_splits(train_labels: np.ndarray, n_test: int, per_class: int = 10,
                seed: int = 0, dataset: str | None = None) -> Splits:
    """Hold out ``per_class`` calibration samples of every class from train.

    train_labels: (N_train,) int. A class with fewer than ``per_class + 1`` samples is an
    error: it would leave nothing of that class in the pool.
    """
    labels = np.asarray(train_labels)
    rng = np.random.default_rng(seed)
    calibration = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= per_class:
            raise CCMAError(f"class {c} has {len(members)} training samples; calibration needs "
                            f"more than --calibration-per-class={per_class}")
        calibration.append(rng.choice(members, size=per_class, replace=False))
    cal = np.sort(np.concatenate(calibration)).astype(np.int64) if calibration else np.zeros(0, np.int64)
    pool = np.setdiff1d(np.arange(len(labels), dtype=np.int64), cal)
    return Splits(pool=pool, calibration=cal, test=np.arange(n_test, dtype=np.int64),
                  dataset=dataset, n_train=len(labels), n_test=n_test)


RECORDED = ("dataset", "n_train", "n_test")


def save_splits(path, splits: Splits, **meta) -> None:
    recorded = {k: getattr(splits, k) for k in RECORDED if getattr(splits, k) is not None}
    save_npz(path, pool=splits.pool, calibration=splits.calibration, test=splits.test,
             **{k: np.asarray(v) for k, v in {**recorded, **meta}.items()})


def load_splits(path, n_train: int | None = None, n_test: int | None = None,
                dataset: str | None = None) -> Splits:
    """The splits at ``path``; a file made for another dataset or for a store of other row
    counts than ``n_train`` / ``n_test`` (where the file records them) is a StoreError."""
    path = Path(path)
    if not path.exists():
        raise StoreError(path, "does not exist (run 'ccma splits' first)")
    try:
        with np.load(path) as data:
            recorded = {k: data[k].item() for k in RECORDED if k in data.files}
            splits = Splits(*(data[k].astype(np.int64) for k in ("pool", "calibration", "test")),
                            **recorded)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise StoreError(path, f"is not a valid splits file ({type(exc).__name__}: {exc}); "
                               "delete it and rerun `ccma splits`") from None
    redo = f"; rerun `ccma splits --dataset {dataset}`" if dataset else "; rerun `ccma splits`"
    if dataset is not None and splits.dataset is not None and splits.dataset != dataset:
        raise StoreError(path, f"was made for dataset {splits.dataset!r}, not {dataset!r}{redo}")
    if np.intersect1d(splits.pool, splits.calibration).size:
        raise StoreError(path, "pool and calibration overlap")
    for name, idx, n in (("pool", splits.pool, n_train), ("calibration", splits.calibration, n_train),
                         ("test", splits.test, n_test)):
        if n is not None and idx.size and (idx.min() < 0 or idx.max() >= n):
            raise StoreError(path, f"'{name}' indexes rows outside the feature store (0..{n - 1})")
    for what, have, expected in (("train", splits.n_train, n_train), ("test", splits.n_test, n_test)):
        if have is not None and expected is not None and have != expected:
            raise StoreError(path, f"was made for {have} {what} rows but the feature store has "
                                   f"{expected}{redo}")
    return splits
