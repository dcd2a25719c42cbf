"""Write-beside-then-rename helpers, so a killed job never leaves a file that looks finished."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, directory: bool = False):
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    On an exception the temporary file or folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}.tmp-"
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
        os.close(fd)
        tmp = Path(name)
    # mkstemp/mkdtemp create owner-only entries; give the result the umask's usual mode.
    tmp.chmod((0o777 if directory else 0o666) & ~_umask())
    try:
        yield tmp
        if directory and target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_npz(target: str | os.PathLike, **arrays) -> None:
    """``np.savez`` to ``target`` atomically."""
    import numpy as np

    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
