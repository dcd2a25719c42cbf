"""One loader per dataset: what lies in ``raw/{dataset}/`` -> ``LoadedDataset`` (docs/method.md §10).

Label indices and row order follow torchvision's dataset classes wherever torchvision has
the dataset (the paper takes its class lists from there); the tests check this against
torchvision itself. Named datasets compare the class list found on disk with the one
shipped in ``classnames/{dataset}.tsv``, so the natural-language names can never be
attached to the wrong label.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CCMAError
from .base import (IMAGE_EXTENSIONS, SPLIT_SEED, TEST_FRACTION, ArrayImages, FileImages,
                   LoadedDataset, Split, ZipImages, clean_name, read_name_pairs, require,
                   stratified_split)

CLASSNAMES_DIR = Path(__file__).with_name("classnames")
STRATIFIED = f"stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%}, split seed {SPLIT_SEED}"


def shipped_pairs(dataset: str) -> list[tuple[str, str]]:
    """(raw id, natural name) per class, label-index order, from the package's data file."""
    path = CLASSNAMES_DIR / f"{dataset}.tsv"
    if not path.exists():
        raise CCMAError(f"no class names ship for dataset {dataset!r}")
    return read_name_pairs(path)


def _named(dataset: str, found: list[str], where) -> list[str]:
    """Natural names for the raw class ids ``found`` on disk (label order), checked against
    the shipped list."""
    pairs = shipped_pairs(dataset)
    expected = [raw for raw, _ in pairs]
    if found != expected:
        if len(found) != len(expected):
            problem = f"{len(found)} classes, expected {len(expected)}"
        else:
            i = next(i for i, (a, b) in enumerate(zip(found, expected)) if a != b)
            problem = f"class {i} is {found[i]!r}, expected {expected[i]!r}"
        raise CCMAError(f"{where}: {problem}; is this the official {dataset} release?")
    return [name for _, name in pairs]


def _subdirs(path: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(path) if e.is_dir())


def _image_files(folder: Path, extensions=IMAGE_EXTENSIONS) -> list[str]:
    """Image files under ``folder`` (recursively), relative to it, in torchvision's order."""
    out = []
    for root, _, files in sorted(os.walk(folder, followlinks=True)):
        rel = Path(root).relative_to(folder)
        out += [str(rel / f) for f in sorted(files) if f.lower().endswith(extensions)]
    return out


# ------------------------------------------------------------------ CIFAR-100

def _unpickle(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")  # the archive's own (python 2) pickles


def load_cifar100(raw: Path) -> LoadedDataset:
    """``cifar-100-python/{train,test,meta}`` pickles: 50,000 / 10,000 32x32 images."""
    base = require(raw / "cifar-100-python", "cifar100")
    names = _named("cifar100", list(_unpickle(require(base / "meta", "cifar100"))["fine_label_names"]),
                   base / "meta")
    splits = {}
    for split in ("train", "test"):
        d = _unpickle(require(base / split, "cifar100"))
        pixels = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        keys = [f"{split}/{i}" for i in range(len(pixels))]
        splits[split] = Split(ArrayImages(np.ascontiguousarray(pixels), keys), d["fine_labels"])
    return LoadedDataset("cifar100", splits["train"], splits["test"], names, "official")


# ------------------------------------------------------------------ Food-101

def load_food101(raw: Path) -> LoadedDataset:
    """``food-101/images/{class}/{id}.jpg`` with ``food-101/meta/{train,test}.json``."""
    base = require(raw / "food-101", "food101")
    meta = {s: json.loads(require(base / "meta" / f"{s}.json", "food101").read_text())
            for s in ("train", "test")}
    classes = sorted(meta["train"])
    if sorted(meta["test"]) != classes:
        raise CCMAError(f"{base / 'meta'}: train.json and test.json name different classes")
    names = _named("food101", classes, base / "meta" / "train.json")
    index = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, entries in meta.items():
        rel, labels = [], []
        for cls, ids in entries.items():   # file order, as torchvision reads it
            rel += [f"{i}.jpg" for i in ids]
            labels += [index[cls]] * len(ids)
        splits[split] = Split(FileImages(base / "images", rel), labels)
    return LoadedDataset("food101", splits["train"], splits["test"], names, "official")


# ------------------------------------------------------------------ Caltech

def _caltech(raw: Path, dataset: str, folder: str, dropped: str) -> LoadedDataset:
    base = require(raw / folder, dataset)
    classes = [c for c in _subdirs(base) if c != dropped]
    names = _named(dataset, classes, base)
    rel, labels = [], []
    for label, cls in enumerate(classes):
        # torchvision reads only the top level of each class folder (Caltech-256 has a
        # stray sub-folder in '056.dog')
        files = sorted(f.name for f in os.scandir(base / cls) if f.is_file() and f.name.endswith(".jpg"))
        rel += [f"{cls}/{f}" for f in files]
        labels += [label] * len(files)
    train, test = stratified_split(Split(FileImages(base, rel), labels), names)
    return LoadedDataset(dataset, train, test, names, STRATIFIED)


def load_caltech101(raw: Path) -> LoadedDataset:
    """``101_ObjectCategories/{class}/image_NNNN.jpg``; the BACKGROUND_Google class is dropped."""
    return _caltech(raw, "caltech101", "101_ObjectCategories", "BACKGROUND_Google")


def load_caltech256(raw: Path) -> LoadedDataset:
    """``256_ObjectCategories/NNN.name/NNN_NNNN.jpg``; the 257.clutter class is dropped."""
    return _caltech(raw, "caltech256", "256_ObjectCategories", "257.clutter")


# ------------------------------------------------------------------ DomainNet (real)

def _read_list(path: Path) -> tuple[list[str], np.ndarray]:
    members, labels = [], []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise CCMAError(f"{path}:{n}: expected 'real/<class>/<file> <label>', got {line!r}")
        members.append(parts[0])
        labels.append(int(parts[1]))
    return members, np.asarray(labels, dtype=np.int64)


def load_domainnet_real(raw: Path) -> LoadedDataset:
    """``real.zip`` (read in place) with the official ``real_train.txt`` / ``real_test.txt``."""
    archive = require(raw / "real.zip", "domainnet_real")
    lists = {s: _read_list(require(raw / f"real_{s}.txt", "domainnet_real")) for s in ("train", "test")}
    folder_of: dict[int, str] = {}
    for split, (members, labels) in lists.items():
        for member, label in zip(members, labels):
            folder = member.split("/")[1] if member.count("/") >= 2 else ""
            if folder_of.setdefault(int(label), folder) != folder:
                raise CCMAError(f"{raw / f'real_{split}.txt'}: label {label} names both "
                                f"{folder_of[int(label)]!r} and {folder!r}")
    k = max(folder_of) + 1 if folder_of else 0
    names = _named("domainnet_real", [folder_of.get(i, "<missing>") for i in range(k)],
                   raw / "real_train.txt")
    with zipfile.ZipFile(archive) as zf:
        present = set(zf.namelist())
    splits = {}
    for split, (members, labels) in lists.items():
        missing = next((m for m in members if m not in present), None)
        if missing is not None:
            raise CCMAError(f"{archive}: lacks {missing!r}, listed in real_{split}.txt")
        splits[split] = Split(ZipImages(archive, members), labels)
    return LoadedDataset("domainnet_real", splits["train"], splits["test"], names, "official")


# ------------------------------------------------------------------ digits

def load_digits(raw: Path | None = None, scale: int = 4) -> LoadedDataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, no download), as 32x32 RGB images.

    Grey levels 0..16 become 0..255 and each pixel a ``scale`` x ``scale`` block (nearest
    neighbour), so the digits stay sharp; each model's own preprocessing then resizes them.
    """
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    names = _named("digits", [str(t) for t in d.target_names], "sklearn.datasets.load_digits")
    grey = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)
    grey = grey.repeat(scale, axis=1).repeat(scale, axis=2)
    pixels = np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=-1))
    full = Split(ArrayImages(pixels, [str(i) for i in range(len(pixels))]), d.target)
    train, test = stratified_split(full, names)
    return LoadedDataset("digits", train, test, names, STRATIFIED)


# ------------------------------------------------------------------ a user's image folder

def _folder_names(classes: list[str], names_file: Path | None) -> list[str]:
    """Natural names for the class folders: the class-names file (``folder<TAB>name`` lines,
    or one name per line in sorted-folder order), else the cleaned folder names."""
    if names_file is None:
        return [clean_name(c) for c in classes]
    text = Path(names_file).read_text(encoding="utf-8")
    if "\t" in text:
        mapping = dict(read_name_pairs(names_file))
        missing = [c for c in classes if c not in mapping]
        if missing:
            raise CCMAError(f"{names_file}: no name for class folder {missing[0]!r}")
        return [mapping[c] for c in classes]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != len(classes):
        raise CCMAError(f"{names_file}: {len(lines)} names for {len(classes)} class folders "
                        "(one name per line, in sorted folder order, or 'folder<TAB>name' lines)")
    return lines


def load_imagefolder(raw: Path, name: str = "imagefolder", classnames_file=None) -> LoadedDataset:
    """One sub-folder per class, either directly in ``raw`` (then a stratified 80/20 split,
    split seed 0) or in ``raw/train`` and ``raw/test``. ``classnames_file`` (default
    ``raw/classnames.txt`` when present) maps folder names to natural names."""
    base = Path(raw)
    if not base.is_dir():
        raise CCMAError(f"{base}: not found; put the images there, one sub-folder per class "
                        "(README, 'Real datasets and features')")
    if classnames_file is None and (base / "classnames.txt").exists():
        classnames_file = base / "classnames.txt"
    explicit = (base / "train").is_dir()
    root = base / "train" if explicit else base
    classes = _subdirs(root)
    if not classes:
        raise CCMAError(f"{root}: no class folders (expected one sub-folder per class)")
    names = _folder_names(classes, classnames_file)

    def read(folder: Path) -> Split:
        present = _subdirs(folder)
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise CCMAError(f"{folder / unknown[0]}: class folder not in {root}")
        rel, labels = [], []
        for label, cls in enumerate(classes):
            if cls in present:
                files = _image_files(folder / cls)
                rel += [f"{cls}/{f}" for f in files]
                labels += [label] * len(files)
        if not rel:
            raise CCMAError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)})")
        return Split(FileImages(folder, rel), labels)

    if explicit:
        if not (base / "test").is_dir():
            raise CCMAError(f"{base / 'test'}: not found; a train/ folder needs a test/ folder beside it")
        train, test = read(root), read(base / "test")
        rule = "official"
    else:
        train, test = stratified_split(read(root), names)
        rule = STRATIFIED
    empty = np.flatnonzero(np.bincount(train.labels, minlength=len(classes)) == 0)
    if len(empty):
        raise CCMAError(f"{root / classes[empty[0]]}: class folder has no training images")
    return LoadedDataset(name, train, test, names, rule)
