"""Feature and prototype stores (Zarr v3), docs/method.md §13.

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
``complete`` attribute is set last, and readers reject a store without it. A feature store
is created whole (group, arrays, attributes) in a temporary folder renamed into place, so a
job killed while creating it leaves nothing that a rerun refuses.

Readers load every array whole and check it before any work starts: each chunk present and
decodable, rows finite and L2-normalised, labels in range. A damaged store therefore stops
the command that reads it at once, in one line naming the store, the array, what is wrong
and the command that rebuilds it; nothing reads a store lazily later on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from .atomic import atomic_path
from .errors import StoreError, describe

SPLITS = ("train", "test")
NORM_TOLERANCE = {"float16": 5e-3, "float32": 1e-4, "float64": 1e-6}
VALIDATION_ROWS = 65536  # rows checked per block, so validation never doubles memory
# Labels' fill value: never a class, so a chunk of class-0 labels is stored like any other and
# an absent chunk is always a lost one (zarr does not store a chunk equal to the fill value).
LABEL_FILL = -1


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
            group, problem = self._reopen(shapes, dim, dtype)
            if group is not None:
                self.group = group
                return
            if _holds_chunks(self.path):
                raise StoreError(self.path, f"{problem}; delete it to re-embed")
            # its creation was cut short before any chunk was written: nothing to keep
        with atomic_path(self.path, directory=True) as tmp:
            os.rmdir(tmp)  # zarr creates the folder itself
            group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
            for split in SPLITS:
                n = shapes[split]
                group.create_array(f"{split}/embeddings", shape=(n, dim), dtype=dtype,
                                   chunks=(max(1, min(self.chunk_rows, n)), dim))
                group.create_array(f"{split}/labels", shape=(n,), dtype="int64",
                                   chunks=(max(1, min(self.chunk_rows, n)),), fill_value=LABEL_FILL)
            group.attrs.update({
                **(attrs or {}),
                "dataset": dataset, "backbone": backbone, "dim": int(dim),
                "n_classes": int(n_classes), "normalized": True, "complete": False,
                "chunk_rows": self.chunk_rows, "done_chunks": {"train": [], "test": []},
            })
        self.group = zarr.open_group(str(self.path), mode="r+")

    def _reopen(self, shapes: dict, dim: int, dtype: str) -> tuple[zarr.Group | None, str]:
        """The existing store if it has this layout, else (None, what is wrong with it)."""
        try:
            group = zarr.open_group(str(self.path), mode="r+")
            same = all(
                f"{s}/embeddings" in group and group[f"{s}/embeddings"].shape == (shapes[s], dim)
                and str(group[f"{s}/embeddings"].dtype) == dtype
                for s in SPLITS
            ) and group.attrs.get("chunk_rows") == self.chunk_rows and "done_chunks" in group.attrs
        except Exception as exc:  # zarr raises many types for damaged or foreign metadata
            return None, f"exists but is not a readable Zarr store ({describe(exc)})"
        return (group, "") if same else (None, "exists with a different shape, dtype or chunking")

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


def _holds_chunks(path: Path) -> bool:
    """Whether any chunk was ever written under the store folder ``path``: any file besides
    Zarr's metadata (``zarr.json``) and the ``*.partial`` files of its interrupted writes."""
    return any(f != "zarr.json" and not f.endswith(".partial")
               for _, _, files in os.walk(path) for f in files)


def _remedy(path: Path, attrs: dict, command: str) -> str:
    """How to rebuild the store ``{data_dir}/{features|prototypes}/{dataset}/{backbone}.zarr``:
    ``ccma {command}`` for real data, ``ccma synth`` for a synthetic dataset."""
    dataset, backbone = attrs.get("dataset", path.parent.name), attrs.get("backbone", path.stem)
    if attrs.get("synthetic"):
        rerun = f"`ccma synth --dataset {dataset} --regime {attrs.get('regime')}`"
    else:
        rerun = f"`ccma {command} --dataset {dataset} --backbone {backbone}`"
        if not attrs:  # unreadable: the store may be a synthetic one
            rerun += " (or `ccma synth`)"
    return f"delete the store and rerun the {rerun} that wrote it"


def _open(path, command: str) -> tuple[zarr.Group, dict]:
    """The finished store at ``path`` and its attributes; ``command`` rebuilds it."""
    path = Path(path)
    if not path.exists():
        raise StoreError(path, "does not exist")
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises several types for a corrupt or foreign folder
        raise StoreError(path, f"is not a readable Zarr store ({describe(exc)}); "
                               f"{_remedy(path, {}, command)}") from None
    if attrs.get("complete") is not True:
        raise StoreError(path, "is incomplete ('complete' attribute not set): the job that "
                               "wrote it did not finish; rerun it")
    return group, attrs


def _read(path, group: zarr.Group, attrs: dict, name: str, command: str) -> np.ndarray:
    """Array ``name`` of the store at ``path``, whole. A missing array, unreadable metadata
    (``zarr.json``) or a lost or undecodable chunk is a StoreError naming the array, what
    is wrong and how to rebuild the store (``command``)."""
    path = Path(path)
    try:
        arr = group[name] if name in group else None
    except Exception as exc:  # a truncated or invalid zarr.json: json, zarr or KeyError
        problem = f"has unreadable metadata (zarr.json: {describe(exc)})"
    else:
        if arr is None:
            problem = "is missing"
        elif arr.nchunks_initialized < arr.nchunks and not _zero_chunks_omitted(arr):
            problem = (f"lacks {arr.nchunks - arr.nchunks_initialized} of its {arr.nchunks} "
                       "chunk files (deleted or never written)")
        else:
            try:
                return arr[...]
            except Exception as exc:  # numcodecs and zarr raise many types for damaged chunks
                problem = f"has a truncated or corrupt chunk ({describe(exc)})"
    raise StoreError(path, f"array '{name}' {problem}; {_remedy(path, attrs, command)}")


def _zero_chunks_omitted(arr) -> bool:
    """Integer arrays with fill value 0 (labels of stores written before ``LABEL_FILL``):
    zarr did not store their all-zero chunks, so an absent chunk may be one of class-0 labels."""
    return arr.dtype.kind in "iu" and arr.fill_value == 0


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
    group, attrs = _open(path, "embed")
    for key in ("dataset", "backbone", "dim", "n_classes"):
        if key not in attrs:
            raise StoreError(path, f"attribute '{key}' is missing")
    splits = {}
    for split in SPLITS:
        emb = _read(path, group, attrs, f"{split}/embeddings", "embed")
        labels = _read(path, group, attrs, f"{split}/labels", "embed").astype(np.int64)
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
    group, attrs = _open(path, "prototypes")
    protos = np.asarray(_read(path, group, attrs, "prototypes", "prototypes"), dtype=np.float32)
    names = attrs.get("classnames")
    if not isinstance(names, list):
        raise StoreError(path, "attribute 'classnames' is missing")
    if protos.ndim != 2 or protos.shape[0] != len(names):
        raise StoreError(path, f"has {protos.shape[0]} prototypes but {len(names)} class names")
    _check_rows(path, "prototypes", protos)
    return PrototypeStore(Path(path), protos, list(names), list(attrs.get("templates", [])), attrs)
