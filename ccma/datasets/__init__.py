"""The dataset registry (docs/method.md §10).

``DATASETS`` maps a name to what ``ccma download`` fetches (``Resource``), what must lie in
``raw/{dataset}/`` and the loader that turns it into train/test images and labels.
``classnames(name)`` returns the K natural-language class names that ship with the package
(``classnames/{name}.tsv``: one ``raw id<TAB>name`` line per class, label-index order).

Names follow torchvision's class lists, cleaned for the text encoder ('aquarium fish', not
'aquarium_fish'). Caltech-101 uses CLIP's curated names (openai/CLIP, data/prompts.md:
'off-center face' / 'centered face' for Faces / Faces_easy, 'side of a car', ...; its
'water lilly' spelled 'water lily'); Caltech-256 drops the numeric prefix and the '-101'
suffix, turns hyphens into spaces and fixes a few names by hand ('ak47' -> 'AK-47',
'head-phones' -> 'headphones', 'faces-easy-101' -> 'face', ...); DomainNet's
'The_Eiffel_Tower' is 'Eiffel Tower'; digits are 'zero' ... 'nine'.

A user's image folder is ``imagefolder`` (``raw/imagefolder/``) or ``imagefolder-NAME``
(``raw/imagefolder-NAME/``), so several can live side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import CCMAError
from . import loaders
from .base import LoadedDataset, Split, clean_name, stratified_split

__all__ = ["DATASETS", "DatasetInfo", "LoadedDataset", "Resource", "Split", "classnames",
           "clean_name", "get_dataset", "load_dataset", "raw_dir", "stratified_split"]


@dataclass(frozen=True)
class Resource:
    """One file ``ccma download`` fetches into ``raw/{dataset}/``.

    ``md5`` the checksum the file must match (None: not checked); ``extract`` unpacks the archive
    there; ``inner`` names an archive inside it to unpack as well (Caltech-101 ships a zip
    of tarballs).
    """

    url: str
    filename: str
    md5: str | None = None
    extract: bool = True
    inner: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    n_classes: int | None          # None: set by the user's folder
    loader: Callable[..., LoadedDataset] | None  # raw dir -> dataset; None: no images
    on_disk: str                   # what raw/{name}/ must hold (errors, README)
    resources: tuple[Resource, ...] = field(default=())

    @property
    def has_images(self) -> bool:
        return self.loader is not None


DATASETS: dict[str, DatasetInfo] = {d.name: d for d in [
    DatasetInfo("cifar100", 100, loaders.load_cifar100,
                "cifar-100-python/{train,test,meta} (the python pickles)",
                (Resource("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                          "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),)),
    DatasetInfo("food101", 101, loaders.load_food101,
                "food-101/images/{class}/*.jpg and food-101/meta/{train,test}.json",
                (Resource("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz", "food-101.tar.gz",
                          "85eeb15f3717b99a5da872d97d918f87"),)),
    DatasetInfo("caltech101", 101, loaders.load_caltech101,
                "101_ObjectCategories/{class}/image_NNNN.jpg",
                (Resource("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",
                          "caltech-101.zip", "3138e1922a9193bfa496528edbbc45d0",
                          inner="caltech-101/101_ObjectCategories.tar.gz"),)),
    DatasetInfo("caltech256", 256, loaders.load_caltech256,
                "256_ObjectCategories/NNN.{class}/NNN_NNNN.jpg",
                (Resource("https://data.caltech.edu/records/nyy15-4j048/files/256_ObjectCategories.tar",
                          "256_ObjectCategories.tar", "67b4f42ca05d46448c6bb8ecd2220f6d"),)),
    # the cleaned DomainNet release (http://ai.bu.edu/M3SDA/); its site publishes no checksums,
    # these MD5s are the ones independent public loaders of the same files agree on
    DatasetInfo("domainnet_real", 345, loaders.load_domainnet_real,
                "real.zip (not extracted), real_train.txt, real_test.txt",
                (Resource("http://csr.bu.edu/ftp/visda/2019/multi-source/real.zip", "real.zip",
                          "dcc47055e8935767784b7162e7c7cca6", extract=False),
                 Resource("http://csr.bu.edu/ftp/visda/2019/multi-source/domainnet/txt/real_train.txt",
                          "real_train.txt", "8ebf02c2075fadd564705f0dc7cd6291", extract=False),
                 Resource("http://csr.bu.edu/ftp/visda/2019/multi-source/domainnet/txt/real_test.txt",
                          "real_test.txt", "6098816791c3ebed543c71ffa11b9054", extract=False))),
    DatasetInfo("digits", 10, loaders.load_digits, "nothing (bundled with scikit-learn)"),
    DatasetInfo("imagefolder", None, loaders.load_imagefolder,
                "{class}/*.jpg (or train/{class}/ and test/{class}/), optional classnames.txt"),
    DatasetInfo("synthetic", None, None, "no images: 'ccma synth' writes its feature stores"),
]}


def get_dataset(name: str) -> DatasetInfo:
    if name in DATASETS:
        return DATASETS[name]
    if name.startswith("imagefolder-") and len(name) > len("imagefolder-"):
        return DATASETS["imagefolder"]
    raise CCMAError(f"--dataset: unknown dataset {name!r}; choose from {', '.join(DATASETS)} "
                    "or imagefolder-NAME")


def raw_dir(data_dir, name: str) -> Path:
    """``{data_dir}/raw/{name}`` (docs/method.md §13)."""
    return Path(data_dir) / "raw" / name


def load_dataset(name: str, raw: Path, classnames_file=None) -> LoadedDataset:
    """Train/test images, labels and class names of dataset ``name`` read from ``raw``."""
    info = get_dataset(name)
    if not info.has_images:
        raise CCMAError(f"{name}: {info.on_disk}")
    if info.name == "imagefolder":
        return loaders.load_imagefolder(Path(raw), name, classnames_file)
    if classnames_file is not None:
        raise CCMAError(f"--classnames-file: only for image folders; {name} ships its class names")
    return info.loader(Path(raw))


def classnames(name: str) -> list[str]:
    """The K class names shipped for dataset ``name``, in label-index order."""
    return [natural for _, natural in loaders.shipped_pairs(name)]
