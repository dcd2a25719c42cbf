"""Images, splits and class names shared by the dataset loaders (docs/method.md §1, §10).

A loader turns what lies on disk into a ``LoadedDataset``: a train and a test ``Split``
(image source + int64 labels, rows in the dataset's own sample order) and the K class
names in label-index order. Images are read lazily, one at a time, so that a DataLoader's
workers can decode them in parallel; every image source can be pickled (for workers that
are spawned rather than forked) and re-opens its files in the worker.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import CCMAError

# torchvision's ImageFolder list, so a user's folder holds the same files in both tools
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_SEED = 0        # fixed stratified split where a dataset has no official test split
TEST_FRACTION = 0.2


class FileImages:
    """Image files ``root / relpath``; row i is ``relpaths[i]``."""

    def __init__(self, root, relpaths: list[str]):
        self.root = Path(root)
        self.keys = list(relpaths)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Image.Image:
        with Image.open(self.root / self.keys[i]) as im:
            return im.convert("RGB")

    def subset(self, rows: np.ndarray) -> "FileImages":
        return FileImages(self.root, [self.keys[i] for i in rows])


class ZipImages:
    """Members of a zip archive, read without extracting it; row i is ``members[i]``.

    The archive is opened lazily once per process: a ZipFile handle must not be shared
    between DataLoader workers.
    """

    def __init__(self, zip_path, members: list[str]):
        self.zip_path = Path(zip_path)
        self.keys = list(members)
        self._zip = None
        self._pid = None

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_pid": None}

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Image.Image:
        if self._zip is None or self._pid != os.getpid():
            self._zip, self._pid = zipfile.ZipFile(self.zip_path), os.getpid()
        with Image.open(io.BytesIO(self._zip.read(self.keys[i]))) as im:
            return im.convert("RGB")

    def subset(self, rows: np.ndarray) -> "ZipImages":
        return ZipImages(self.zip_path, [self.keys[i] for i in rows])


class ArrayImages:
    """Images held in memory: ``pixels`` (N, H, W, 3) uint8; ``keys`` name the rows."""

    def __init__(self, pixels: np.ndarray, keys: list[str]):
        if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
            raise ValueError(f"pixels must be (N, H, W, 3) uint8, got {pixels.shape} {pixels.dtype}")
        self.pixels = pixels
        self.keys = list(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> Image.Image:
        return Image.fromarray(self.pixels[i])

    def subset(self, rows: np.ndarray) -> "ArrayImages":
        return ArrayImages(self.pixels[rows], [self.keys[i] for i in rows])


@dataclass
class Split:
    """One split: ``images[i]`` is a PIL RGB image with label ``labels[i]`` (int64)."""

    images: FileImages | ZipImages | ArrayImages
    labels: np.ndarray

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def subset(self, rows: np.ndarray) -> "Split":
        return Split(self.images.subset(rows), self.labels[rows])

    def fingerprint(self) -> str:
        """sha256 of the row keys and labels: equal across backbones iff the rows match."""
        h = hashlib.sha256("\n".join(self.images.keys).encode())
        h.update(self.labels.tobytes())
        return h.hexdigest()


@dataclass
class LoadedDataset:
    name: str
    train: Split
    test: Split
    classnames: list[str]   # K natural-language names, label-index order
    split_rule: str         # "official" or how train/test was drawn

    @property
    def n_classes(self) -> int:
        return len(self.classnames)


def stratified_split(split: Split, names: list[str], test_fraction: float = TEST_FRACTION,
                     seed: int = SPLIT_SEED) -> tuple[Split, Split]:
    """Stratified train/test split for datasets without an official one (docs/method.md §1, §10).

    Each class c of n_c images gives max(1, round(test_fraction * n_c)) of them, drawn
    without replacement with ``np.random.default_rng(seed)`` (classes in label order), to
    test; both parts keep the dataset's own row order. Per-class rounding keeps every class
    at 80/20 however small (scikit-learn's ``train_test_split`` apportions the test size
    across classes and needs at least K test rows).
    """
    counts = np.bincount(split.labels, minlength=len(names))
    if (counts[counts > 0] < 2).any():
        c = int(np.flatnonzero((counts > 0) & (counts < 2))[0])
        raise CCMAError(f"class {names[c]!r} has {counts[c]} image(s); the stratified "
                        f"{1 - test_fraction:.0%}/{test_fraction:.0%} split needs at least 2 per class")
    rng = np.random.default_rng(seed)
    test = []
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(split.labels == c)
        n_test = max(1, int(np.floor(test_fraction * len(members) + 0.5)))
        test.append(rng.choice(members, size=n_test, replace=False))
    is_test = np.zeros(len(split.labels), dtype=bool)
    if test:
        is_test[np.concatenate(test)] = True
    return split.subset(np.flatnonzero(~is_test)), split.subset(np.flatnonzero(is_test))


def clean_name(raw: str) -> str:
    """A folder name as the text encoder should read it: 'aquarium_fish' -> 'aquarium fish'."""
    return " ".join(raw.replace("_", " ").split())


def read_name_pairs(path) -> list[tuple[str, str]]:
    """Rows ``raw_id<TAB>natural name`` of a class-names file, in file order."""
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        raw, sep, name = line.partition("\t")
        if not sep or not raw or not name.strip():
            raise CCMAError(f"{path}:{n}: expected 'folder<TAB>class name', got {line!r}")
        pairs.append((raw, name.strip()))
    return pairs


def require(path: Path, dataset: str) -> Path:
    """``path`` must exist; otherwise one line that says what to do."""
    if not path.exists():
        raise CCMAError(f"{path}: not found; fetch {dataset} with 'ccma download --dataset {dataset}' "
                        f"or place its files there (README, 'Real datasets and features')")
    return path
