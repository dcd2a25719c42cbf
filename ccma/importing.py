"""``ccma import-features`` and ``ccma import-prototypes``: embeddings computed elsewhere, as
stores that every later command reads exactly as the ones ``ccma embed`` and ``ccma prototypes``
write (docs/method.md §13).

Input files, one row per sample (features) or per class (prototypes):

* ``.npz``: arrays ``embeddings`` (N, d), ``labels`` (N,) integers 0..K-1, ``split`` (N,)
  ``"train"``/``"test"``, optional ``paths`` (N,) and ``classnames`` (K,); for prototypes
  ``prototypes`` (K, d) and ``classnames`` (K,).
* ``.parquet``: columns ``embedding`` (list of floats), ``label``, ``split``, optional
  ``path``; for prototypes ``classname`` and ``embedding``.
* ``.npy``: the (N, d) or (K, d) matrix alone; labels and split come from two more ``.npy``
  files (``labels=``, ``split=``), class names from a text file.

Rows must be finite and L2-normalised (the stores hold unit rows, and the cosine geometry of
the method assumes them): rows off unit norm are refused, since scaling them silently would
hide a pipeline that forgot to normalise (or normalised another way); ``normalize=True``
scales them instead, in float32 as ``ccma embed`` does. Without it rows are stored as given.
Every problem is one CCMAError naming the file and what is wrong. A store is written whole
in a temporary folder renamed into place, so an import killed half-way leaves nothing
behind and is simply run again.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .embed import NAME_RE, l2_normalize
from .errors import CCMAError, describe
from .features import (NORM_TOLERANCE, SPLITS, FeatureStoreWriter, feature_path, prototype_path,
                       read_features, write_prototypes)
from .teacher import zero_shot_accuracy

FORMATS = (".npz", ".parquet", ".npy")
IMPORTED = {"library": "imported", "init": "imported", "split_rule": "imported"}


@dataclass
class Rows:
    """What an input file holds: ``embeddings`` (N, d) float32, ``labels`` (N,) int64, ``split``
    (N,) str, ``paths`` (N,) str or None, ``classnames`` (K,) or None."""

    embeddings: np.ndarray
    labels: np.ndarray | None
    split: np.ndarray | None
    paths: np.ndarray | None
    classnames: list[str] | None


def _columns(file: Path, names: dict[str, str], required: tuple[str, ...], companions: dict) -> dict:
    """The arrays of ``file`` under our names (``names``: our name -> the file's key or
    column); ``companions`` (our name -> .npy path) fill in what a bare ``.npy`` lacks."""
    if not file.is_file():
        raise CCMAError(f"{file}: does not exist")
    suffix = file.suffix.lower()
    if suffix not in FORMATS:
        raise CCMAError(f"{file}: unknown format {suffix or '(no suffix)'!r}; give {', '.join(FORMATS)}")
    try:
        if suffix == ".npz":
            with np.load(file, allow_pickle=False) as data:
                found = {ours: data[key] for ours, key in names.items() if key in data.files}
        elif suffix == ".parquet":
            found = _parquet(file, names)
        else:
            found = {"embeddings": np.load(file, allow_pickle=False),
                     **{ours: np.load(p, allow_pickle=False) for ours, p in companions.items() if p}}
    except CCMAError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise CCMAError(f"{file}: cannot be read ({describe(exc)})") from None
    missing = [names[k] for k in required if k not in found]
    if missing:
        where = "arrays" if suffix == ".npz" else "columns" if suffix == ".parquet" else "companion files"
        raise CCMAError(f"{file}: lacks the {where} {', '.join(missing)}")
    return found


def _parquet(file: Path, names: dict[str, str]) -> dict:
    """Columns of a Parquet file; a list column becomes a (N, d) matrix."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(file, columns=[c for c in names.values() if c in pq.read_schema(file).names])
    found = {}
    for ours, column in names.items():
        if column not in table.column_names:
            continue
        col = table.column(column).combine_chunks()
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
            lengths = col.value_lengths().to_numpy(zero_copy_only=False)
            if len(lengths) and (col.null_count or lengths.min() != lengths.max()):
                raise CCMAError(f"{file}: column {column!r} has rows of different lengths or nulls")
            width = int(lengths[0]) if len(lengths) else 0
            found[ours] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), width)
        else:
            found[ours] = col.to_numpy(zero_copy_only=False)
    return found


def unit_rows(file: Path, what: str, x: np.ndarray, normalize: bool) -> np.ndarray:
    """``x`` (n, d) as float32 unit rows. Non-finite values are an error; rows off unit norm
    (beyond the stored dtype's tolerance) are one unless ``normalize``."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0 or x.dtype.kind not in "fiu":
        raise CCMAError(f"{file}: {what} must be a non-empty numeric (rows, dim) matrix, got "
                        f"shape {x.shape} dtype {x.dtype}")
    x32 = x.astype(np.float32)
    finite = np.isfinite(x32).all(axis=1)
    if not finite.all():
        raise CCMAError(f"{file}: {what} row {int(np.flatnonzero(~finite)[0])} contains NaN or inf")
    norms = np.linalg.norm(x32, axis=1)
    if (norms == 0).any():
        raise CCMAError(f"{file}: {what} row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
    off = np.abs(norms - 1.0) > NORM_TOLERANCE.get(str(x.dtype), NORM_TOLERANCE["float32"])
    if off.any() and not normalize:
        row = int(np.flatnonzero(off)[0])
        raise CCMAError(f"{file}: {what} row {row} is not L2-normalised (norm {norms[row]:.4f}); "
                        "pass --normalize to scale every row to unit norm")
    return l2_normalize(x32) if normalize else x32


def _labels(file: Path, labels: np.ndarray, n: int, n_classes: int | None) -> tuple[np.ndarray, int]:
    """(N,) int64 labels and K (``n_classes``, else the largest label + 1)."""
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise CCMAError(f"{file}: labels have shape {labels.shape}, expected ({n},) like the embeddings")
    if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(labels == np.round(labels))):
        raise CCMAError(f"{file}: labels must be integers 0..K-1, got dtype {labels.dtype}")
    labels = labels.astype(np.int64)
    k = int(labels.max()) + 1 if n_classes is None else n_classes
    if labels.min() < 0 or labels.max() >= k:
        raise CCMAError(f"{file}: labels must lie in 0..{k - 1}, found {labels.min()}..{labels.max()}")
    return labels, k


def read_classnames(path) -> list[str]:
    """One class name per non-empty line of ``path`` (label-index order)."""
    path = Path(path)
    if not path.is_file():
        raise CCMAError(f"--classnames-file: {path} does not exist")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _names(file: Path, found, given: list[str] | None) -> list[str] | None:
    names = given if given is not None else found.get("classnames")
    if names is None:
        return None
    names = [str(n) for n in np.asarray(names).tolist()]
    if len(set(names)) != len(names):
        raise CCMAError(f"{file}: class names repeat")
    return names


def read_rows(file, *, labels=None, split=None, classnames: list[str] | None = None) -> Rows:
    """The rows of a feature file (module docstring); ``labels``/``split``: the ``.npy``
    files that go with a bare ``.npy`` matrix."""
    file = Path(file)
    if (labels or split) and file.suffix.lower() != ".npy":
        raise CCMAError(f"{file}: --labels and --split go with a bare .npy matrix only; this file has its own")
    found = _columns(file, {"embeddings": "embeddings", "labels": "labels", "split": "split",
                            "paths": "paths", "classnames": "classnames"}
                     if file.suffix.lower() != ".parquet" else
                     {"embeddings": "embedding", "labels": "label", "split": "split", "paths": "path"},
                     ("embeddings", "labels", "split"), {"labels": labels, "split": split})
    return Rows(found["embeddings"], found["labels"], found["split"], found.get("paths"),
                _names(file, found, classnames))


def _target(path: Path, overwrite: bool) -> Path:
    if path.exists() and not overwrite:
        raise CCMAError(f"{path}: exists; pass --overwrite to replace it")
    return path


def _check_name(option: str, name: str) -> None:
    if not NAME_RE.match(name):
        raise CCMAError(f"{option}: {name!r} is not a valid store name (letters, digits, . _ -)")


def import_features(data_dir, dataset: str, backbone: str, file, *, normalize: bool = False,
                    dtype: str = "float16", labels=None, split=None, classnames: list[str] | None = None,
                    chunk_rows: int = 4096, overwrite: bool = False) -> tuple[Path, dict]:
    """Write ``features/{dataset}/{backbone}.zarr`` from ``file``; returns its path and the
    rows per split. The stored attributes say the rows were imported, from which file (and
    its sha256), and, with ``paths``, fingerprint the rows as ``ccma embed`` does so that a
    teacher and a student imported from different files can be told apart."""
    _check_name("--dataset", dataset)
    _check_name("--backbone", backbone)
    file = Path(file)
    rows = read_rows(file, labels=labels, split=split, classnames=classnames)
    emb = unit_rows(file, "embeddings", rows.embeddings, normalize)
    n = len(emb)
    lab, k = _labels(file, rows.labels, n, None if rows.classnames is None else len(rows.classnames))
    where = np.asarray(rows.split).astype(str)
    if where.shape != (n,):
        raise CCMAError(f"{file}: split has shape {where.shape}, expected ({n},) like the embeddings")
    unknown = sorted(set(np.unique(where).tolist()) - set(SPLITS))
    if unknown:
        raise CCMAError(f"{file}: split holds {unknown[:3]}; every row must be 'train' or 'test'")
    parts = {s: np.flatnonzero(where == s) for s in SPLITS}
    for s, idx in parts.items():
        if not len(idx):
            raise CCMAError(f"{file}: no '{s}' rows; the split column needs both train and test rows")
    paths = None if rows.paths is None else np.asarray(rows.paths).astype(str)
    if paths is not None and paths.shape != (n,):
        raise CCMAError(f"{file}: paths have shape {paths.shape}, expected ({n},)")
    out = _target(feature_path(data_dir, dataset, backbone), overwrite)
    attrs = {**IMPORTED, "model": file.name, "pretrained": None, "activation": None,
             "source": {"file": str(file.resolve()), "sha256": _sha256(file), "renormalised": bool(normalize)},
             "classnames": rows.classnames,
             "row_fingerprints": {s: _fingerprint(None if paths is None else paths[idx], lab[idx])
                                  for s, idx in parts.items()}}
    with atomic_path(out, directory=True) as tmp:
        os.rmdir(tmp)  # the writer creates the folder itself
        writer = FeatureStoreWriter(tmp, dataset=dataset, backbone=backbone, n_train=len(parts["train"]),
                                    n_test=len(parts["test"]), dim=emb.shape[1], n_classes=k, dtype=dtype,
                                    chunk_rows=chunk_rows, attrs=attrs)
        for s, idx in parts.items():
            for chunk in range(writer.n_chunks(s)):
                span = idx[writer.chunk_slice(s, chunk)]
                writer.write_chunk(s, chunk, emb[span].astype(dtype), lab[span])
            if paths is not None:
                # variable-length strings: numpy's fixed-width ones have no Zarr v3 spec
                writer.group.create_array(f"{s}/paths", shape=(len(idx),), dtype=str)[:] = paths[idx]
        writer.finish()
    return out, {s: len(idx) for s, idx in parts.items()}


def import_prototypes(data_dir, dataset: str, backbone: str, file, *, normalize: bool = False,
                      classnames: list[str] | None = None, overwrite: bool = False) -> tuple[Path, float]:
    """Write ``prototypes/{dataset}/{backbone}.zarr`` from ``file`` (K class embeddings and
    their names); returns its path and the teacher's zero-shot test accuracy. The teacher's
    feature store of the same name must exist: K and d must match it, and so must its class
    names where it records them."""
    _check_name("--dataset", dataset)
    _check_name("--backbone", backbone)
    file = Path(file)
    is_parquet = file.suffix.lower() == ".parquet"
    found = _columns(file, {"embeddings": "embedding" if is_parquet else "prototypes",
                            "classnames": "classname" if is_parquet else "classnames"},
                     ("embeddings",), {})
    protos = unit_rows(file, "prototypes", found["embeddings"], normalize)
    names = _names(file, found, classnames)
    if names is None:
        raise CCMAError(f"{file}: no class names; give them in the file or with --classnames-file")
    store = read_features(feature_path(data_dir, dataset, backbone))
    if len(names) != len(protos) or len(protos) != store.n_classes:
        raise CCMAError(f"{file}: {len(protos)} prototypes and {len(names)} class names, but the "
                        f"feature store {store.path} has K={store.n_classes} classes")
    if protos.shape[1] != store.dim:
        raise CCMAError(f"{file}: prototypes have dimension {protos.shape[1]} but the feature store "
                        f"{store.path} has {store.dim}")
    recorded = store.attrs.get("classnames")
    if recorded and list(recorded) != names:
        raise CCMAError(f"{file}: class names differ from those of {store.path} "
                        f"(first: {names[0]!r} vs {recorded[0]!r}); give them in label-index order")
    accuracy = zero_shot_accuracy(store.test.embeddings, store.test.labels, protos)
    out = _target(prototype_path(data_dir, dataset, backbone), overwrite)
    write_prototypes(out, protos, classnames=names, templates=[], backbone=backbone,
                     attrs={**IMPORTED, "dataset": dataset, "zero_shot_test_accuracy": accuracy,
                            "source": {"file": str(file.resolve()), "sha256": _sha256(file),
                                       "renormalised": bool(normalize)}})
    return out, accuracy


def _sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(paths: np.ndarray | None, labels: np.ndarray) -> str:
    """sha256 of the rows' paths (when given) and labels, as ``ccma embed`` records it."""
    h = hashlib.sha256("\n".join(paths.tolist()).encode() if paths is not None else b"")
    h.update(labels.astype(np.int64).tobytes())
    return h.hexdigest()
