"""Feature and prototype stores (Zarr v3), SPEC section 13.

Feature store ``features/{dataset}/{backbone}.zarr``::

    train/embeddings (N_train, d) float16|float32, rows L2-normalised
    train/labels     (N_train,)   int64
    test/embeddings  (N_test, d)
    test/labels      (N_test,)
    attrs: dataset, backbone, dim, normalized, complete, n_classes, done_chunks, ...

Prototype store ``prototypes/{dataset}/{backbone}.zarr``::

    prototypes (K, d_T) float32, rows L2-normalised
    attrs: classnames (K strings, label-index order), templates, backbone, complete, ...

Writers never leave a store that reads as finished before every row is written: the
``complete`` attribute is set last, and readers reject a store without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from .atomic import atomic_path
from .errors import StoreError

SPLITS = ("train", "test")
NORM_TOLERANCE = {"float16": 5e-3, "float32": 1e-4, "float64": 1e-6}
VALIDATION_ROWS = 65536  # rows checked per block, so validation never doubles memory


def feature_path(data_dir, dataset: str, backbone: str) -> Path:
    return Path(data_dir) / "features" / dataset / f"{backbone}.zarr"


def prototype_path(data_dir, dataset: str, backbone: str) -> Path:
    return Path(data_dir) / "prototypes" / dataset / f"{backbone}.zarr"


@dataclass
class FeatureSplit:
    """One split of a feature store: ``embeddings`` (N, d) and ``labels`` (N,) int64."""

    embeddings: np.ndarray
    labels: np.ndarray


@dataclass
class FeatureStore:
    path: Path
    attrs: dict
    train: FeatureSplit
    test: FeatureSplit

    @property
    def dim(self) -> int:
        return int(self.train.embeddings.shape[1])

    @property
    def n_classes(self) -> int:
        return int(self.attrs["n_classes"])


@dataclass
class PrototypeStore:
    """``prototypes`` (K, d_T) float32 with ``classnames`` in label-index order."""

    path: Path
    prototypes: np.ndarray
    classnames: list[str]
    templates: list[str]
    attrs: dict = field(default_factory=dict)


class FeatureStoreWriter:
    """Create (or reopen, to resume) a feature store and fill it chunk by chunk.

    ``done_chunks`` in the attributes records finished chunks per split, so an embedding
    job killed mid-way resumes with the chunks still missing; ``finish`` sets ``complete``.
    """

    def __init__(self, path, *, dataset: str, backbone: str, n_train: int, n_test: int,
                 dim: int, n_classes: int, dtype: str = "float16", chunk_rows: int = 4096,
                 attrs: dict | None = None):
        self.path = Path(path)
        self.chunk_rows = int(chunk_rows)
        shapes = {"train": n_train, "test": n_test}
        if self.path.exists():
            group = zarr.open_group(str(self.path), mode="r+")
            ok = all(
                f"{s}/embeddings" in group and group[f"{s}/embeddings"].shape == (shapes[s], dim)
                and str(group[f"{s}/embeddings"].dtype) == dtype
                for s in SPLITS
            ) and group.attrs.get("chunk_rows") == self.chunk_rows
            if not ok:
                raise StoreError(self.path, "exists with a different shape, dtype or chunking; "
                                            "delete it to re-embed")
            self.group = group
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(self.path), mode="w", zarr_format=3)
        for split in SPLITS:
            n = shapes[split]
            group.create_array(f"{split}/embeddings", shape=(n, dim), dtype=dtype,
                               chunks=(max(1, min(self.chunk_rows, n)), dim))
            group.create_array(f"{split}/labels", shape=(n,), dtype="int64",
                               chunks=(max(1, min(self.chunk_rows, n)),))
        group.attrs.update({
            **(attrs or {}),
            "dataset": dataset, "backbone": backbone, "dim": int(dim),
            "n_classes": int(n_classes), "normalized": True, "complete": False,
            "chunk_rows": self.chunk_rows, "done_chunks": {"train": [], "test": []},
        })
        self.group = group

    def n_chunks(self, split: str) -> int:
        n = self.group[f"{split}/labels"].shape[0]
        return -(-n // self.chunk_rows)

    def chunk_slice(self, split: str, chunk: int) -> slice:
        n = self.group[f"{split}/labels"].shape[0]
        return slice(chunk * self.chunk_rows, min(n, (chunk + 1) * self.chunk_rows))

    def done_chunks(self, split: str) -> set[int]:
        return set(self.group.attrs["done_chunks"][split])

    def write_chunk(self, split: str, chunk: int, embeddings: np.ndarray, labels: np.ndarray) -> None:
        """Write rows of ``chunk`` (embeddings (n, d) L2-normalised, labels (n,)), then record it."""
        rows = self.chunk_slice(split, chunk)
        self.group[f"{split}/embeddings"][rows] = np.asarray(embeddings)
        self.group[f"{split}/labels"][rows] = np.asarray(labels, dtype=np.int64)
        done = dict(self.group.attrs["done_chunks"])
        done[split] = sorted(set(done[split]) | {int(chunk)})
        self.group.attrs["done_chunks"] = done

    def finish(self, **attrs) -> None:
        missing = {s: self.n_chunks(s) - len(self.done_chunks(s)) for s in SPLITS}
        if any(missing.values()):
            raise StoreError(self.path, f"cannot mark complete, chunks missing: {missing}")
        self.group.attrs.update({**attrs, "complete": True})


def write_features(path, *, dataset: str, backbone: str, train: FeatureSplit, test: FeatureSplit,
                   n_classes: int, dtype: str = "float16", attrs: dict | None = None) -> None:
    """Write a whole feature store at once, atomically (used by ``synth`` and tests)."""
    dim = train.embeddings.shape[1]
    with atomic_path(path, directory=True) as tmp:
        os.rmdir(tmp)  # zarr creates the folder itself
        writer = FeatureStoreWriter(tmp, dataset=dataset, backbone=backbone,
                                    n_train=len(train.labels), n_test=len(test.labels), dim=dim,
                                    n_classes=n_classes, dtype=dtype,
                                    chunk_rows=max(len(train.labels), len(test.labels), 1),
                                    attrs=attrs)
        for split, data in (("train", train), ("test", test)):
            writer.write_chunk(split, 0, data.embeddings.astype(dtype), data.labels)
        writer.finish()


def _open(path) -> zarr.Group:
    path = Path(path)
    if not path.exists():
        raise StoreError(path, "does not exist")
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception as exc:  # zarr raises several types for a corrupt or foreign folder
        raise StoreError(path, f"is not a readable Zarr store ({type(exc).__name__})") from None
    if group.attrs.get("complete") is not True:
        raise StoreError(path, "is incomplete ('complete' attribute not set): the job that "
                               "wrote it did not finish; rerun it")
    return group


def _check_rows(path, name: str, emb) -> None:
    """Reject NaN/inf rows and rows that are not L2-normalised, block by block."""
    tol = NORM_TOLERANCE.get(str(emb.dtype), 1e-3)
    for start in range(0, emb.shape[0], VALIDATION_ROWS):
        block = np.asarray(emb[start:start + VALIDATION_ROWS], dtype=np.float32)
        finite = np.isfinite(block).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise StoreError(path, f"{name} row {row} contains NaN or inf")
        norms = np.linalg.norm(block, axis=1)
        bad = np.abs(norms - 1.0) > tol
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise StoreError(path, f"{name} row {row} is not L2-normalised (norm {norms[row - start]:.4f})")


def read_features(path) -> FeatureStore:
    """Read and validate a feature store; embeddings keep their stored dtype."""
    group = _open(path)
    attrs = dict(group.attrs)
    for key in ("dataset", "backbone", "dim", "n_classes"):
        if key not in attrs:
            raise StoreError(path, f"attribute '{key}' is missing")
    splits = {}
    for split in SPLITS:
        for arr in ("embeddings", "labels"):
            if f"{split}/{arr}" not in group:
                raise StoreError(path, f"array '{split}/{arr}' is missing")
        emb = group[f"{split}/embeddings"][...]
        labels = group[f"{split}/labels"][...].astype(np.int64)
        if emb.ndim != 2 or emb.shape[1] != attrs["dim"] or labels.shape != (emb.shape[0],):
            raise StoreError(path, f"'{split}' has embeddings {emb.shape} and labels {labels.shape}, "
                                   f"expected (N, {attrs['dim']}) and (N,)")
        _check_rows(path, f"{split}/embeddings", emb)
        k = int(attrs["n_classes"])
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise StoreError(path, f"{split}/labels outside 0..{k - 1} "
                                   f"(found {labels.min()}..{labels.max()})")
        splits[split] = FeatureSplit(emb, labels)
    return FeatureStore(Path(path), attrs, splits["train"], splits["test"])


def check_same_rows(teacher: FeatureStore, student: FeatureStore) -> None:
    """Teacher and student stores must describe the same samples in the same order."""
    for split in SPLITS:
        t, s = getattr(teacher, split), getattr(student, split)
        if len(t.labels) != len(s.labels):
            raise StoreError(student.path, f"{split} has {len(s.labels)} rows but the teacher store "
                                           f"{teacher.path} has {len(t.labels)}")
        if not np.array_equal(t.labels, s.labels):
            raise StoreError(student.path, f"{split} labels are in a different order from the "
                                           f"teacher store {teacher.path}")


def write_prototypes(path, prototypes: np.ndarray, *, classnames: list[str], templates: list[str],
                     backbone: str, attrs: dict | None = None) -> None:
    """Write a prototype store atomically; ``prototypes`` (K, d_T), rows L2-normalised."""
    prototypes = np.asarray(prototypes, dtype=np.float32)
    with atomic_path(path, directory=True) as tmp:
        os.rmdir(tmp)
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        group.create_array("prototypes", data=prototypes)
        group.attrs.update({**(attrs or {}), "classnames": list(classnames),
                            "templates": list(templates), "backbone": backbone,
                            "n_classes": len(classnames), "dim": int(prototypes.shape[1]),
                            "normalized": True, "complete": True})


def read_prototypes(path) -> PrototypeStore:
    group = _open(path)
    attrs = dict(group.attrs)
    if "prototypes" not in group:
        raise StoreError(path, "array 'prototypes' is missing")
    protos = np.asarray(group["prototypes"][...], dtype=np.float32)
    names = attrs.get("classnames")
    if not isinstance(names, list):
        raise StoreError(path, "attribute 'classnames' is missing")
    if protos.ndim != 2 or protos.shape[0] != len(names):
        raise StoreError(path, f"has {protos.shape[0]} prototypes but {len(names)} class names")
    _check_rows(path, "prototypes", protos)
    return PrototypeStore(Path(path), protos, list(names), list(attrs.get("templates", [])), attrs)
