"""``ccma download``: fetch a dataset's files into ``raw/{dataset}/`` (SPEC 13).

Each ``Resource`` is downloaded beside its target and renamed only once complete (and, when
the source publishes one, once its md5 matches), then unpacked; a marker file records that
a resource is fully in place, so an interrupted download starts that resource again and a
finished one is never fetched twice. torchvision's download helpers do the transfer (with a
progress bar in bytes) and the unpacking.
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


def fetch(resource: Resource, raw: Path, dataset: str) -> bool:
    """Download (and unpack) one resource into ``raw``; False when it was already there."""
    from torchvision.datasets.utils import download_url, extract_archive

    marker = marker_path(raw, resource)
    if marker.exists():
        return False
    raw.mkdir(parents=True, exist_ok=True)
    target = raw / resource.filename
    if not target.exists():
        try:
            with atomic_path(target) as tmp:
                tmp.unlink()  # download_url skips a file that exists when there is no md5
                download_url(resource.url, str(tmp.parent), tmp.name, resource.md5)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise CCMAError(f"{dataset}: could not reach {resource.url} ({reason}); download it where "
                            f"there is internet and copy {raw} here") from None
        except RuntimeError as exc:  # torchvision: "File not found or corrupted." (md5 mismatch)
            raise CCMAError(f"{dataset}: {resource.url} failed its md5 check "
                            f"(expected {resource.md5}): {exc}") from None
    if resource.extract:
        extract_archive(str(target), str(raw))
        if resource.inner:
            extract_archive(str(raw / resource.inner), str(raw), remove_finished=True)
        target.unlink()  # the marker now stands for the unpacked files
    with atomic_path(marker) as tmp:
        tmp.write_text(json.dumps({"url": resource.url, "md5": resource.md5}) + "\n")
    return True


def download(name: str, raw: Path, log=print) -> None:
    """Fetch every resource of dataset ``name`` into ``raw``."""
    info = get_dataset(name)
    if not info.resources:
        if info.name == "imagefolder":
            raise CCMAError(f"{name}: nothing to download; put your images in {raw} as {info.on_disk}")
        log(f"{name}: nothing to download ({info.on_disk})")
        return
    for resource in info.resources:
        fetched = fetch(resource, Path(raw), name)
        log(f"{name}: {resource.filename} {'fetched' if fetched else 'already present'}")
