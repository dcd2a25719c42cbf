"""``ccma download``: fetch a dataset's files into ``raw/{dataset}/`` (docs/method.md §13).

Each ``Resource`` is downloaded beside its target and renamed only once complete and its md5
matches, then unpacked; a marker file records that a resource is fully in place and the md5
it was checked against, so an interrupted download starts that resource again, a finished
one is never fetched twice, and a file fetched before its md5 was known is checked against
it on the next run. torchvision's download helpers do the transfer (with a progress bar in
bytes), the check and the unpacking.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
from pathlib import Path

from .atomic import atomic_path
from .datasets import Resource, get_dataset
from .errors import CCMAError


def marker_path(raw: Path, resource: Resource) -> Path:
    return raw / f".{resource.filename}.done"


def fetch(resource: Resource, raw: Path, dataset: str) -> str:
    """Download (and unpack) one resource into ``raw``; says what was done: 'fetched',
    'verified' (a file already there, now checked) or 'already present'."""
    from torchvision.datasets.utils import check_integrity, extract_archive

    marker = marker_path(raw, resource)
    if marker.exists() and json.loads(marker.read_text()).get("md5") == resource.md5:
        return "already present"
    raw.mkdir(parents=True, exist_ok=True)
    target = raw / resource.filename
    if target.exists():  # killed before its marker, or fetched before its md5 was known
        if not check_integrity(str(target), resource.md5):
            raise CCMAError(f"{dataset}: {target} does not match its md5 {resource.md5}; "
                            "delete it and run 'ccma download' again")
        done = "verified"
    else:
        _download(resource, target, dataset)
        done = "fetched"
    if resource.extract:
        extract_archive(str(target), str(raw))
        if resource.inner:
            extract_archive(str(raw / resource.inner), str(raw), remove_finished=True)
        target.unlink()  # the marker now stands for the unpacked files
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps({"url": resource.url, "md5": resource.md5}) + "\n")
    return done


def _download(resource: Resource, target: Path, dataset: str) -> None:
    """``resource`` to ``target``, which appears only once complete and matching its md5."""
    from torchvision.datasets.utils import download_url

    try:
        with atomic_path(target) as tmp:
            tmp.unlink()  # download_url skips a file that exists when there is no md5
            download_url(resource.url, str(tmp.parent), tmp.name, resource.md5)
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise CCMAError(f"{dataset}: could not reach {resource.url} ({reason}); download it where "
                        f"there is internet and copy {target.parent} here") from None
    except RuntimeError as exc:  # torchvision: "File not found or corrupted." (md5 mismatch)
        raise CCMAError(f"{dataset}: {resource.url} failed its md5 check "
                        f"(expected {resource.md5}): {exc}") from None


def download(name: str, raw: Path, log=print) -> None:
    """Fetch every resource of dataset ``name`` into ``raw``."""
    info = get_dataset(name)
    if not info.resources:
        if info.name == "imagefolder":
            raise CCMAError(f"{name}: nothing to download; put your images in {raw} as {info.on_disk}")
        log(f"{name}: nothing to download ({info.on_disk})")
        return
    for resource in info.resources:
        log(f"{name}: {resource.filename} {fetch(resource, Path(raw), name)}")
