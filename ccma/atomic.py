"""Write-beside-then-rename helpers, so a killed job never leaves a file that looks finished.

A write goes to a hidden temporary ``.{name}.tmp-{pid}@{host}-XXXX`` beside its target. A
job killed mid-write leaves that temporary behind; the next write of the same target (and
``ccma run`` on start) removes it when it is older than the running process and its writer,
named in it, no longer runs on this host. A concurrent writer's temporary is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

# When this process started, near enough: this module is imported before anything is written.
STARTED = time.time()
HOST = socket.gethostname().split(".")[0]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, directory: bool = False):
    """Yield a temporary path beside ``target``; move it onto ``target`` on success.

    On an exception the temporary file or folder is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)
    prefix = f"{_prefix(target)}{os.getpid()}@{HOST}-"
    try:
        if directory:
            tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=target.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=prefix, dir=target.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:  # a read-only folder: name the file the user asked for, not ours
        raise OSError(exc.errno, exc.strerror, str(target)) from None
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


def _prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def clean_stale(target: str | os.PathLike) -> None:
    """Remove the temporaries of ``target`` that killed writes left: last modified before this
    process started, by a writer that is no longer running. Best effort (a read-only folder
    keeps them)."""
    target = Path(target)
    prefix = _prefix(target)
    try:
        entries = [e for e in target.parent.iterdir() if e.name.startswith(prefix)]
    except OSError:  # no folder yet, or an unreadable one
        return
    for entry in entries:
        try:
            if entry.lstat().st_mtime >= STARTED or _writer_alive(entry.name[len(prefix):]):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:  # removed meanwhile by another process, or not ours to remove
            pass


def _writer_alive(tag: str) -> bool:
    """Whether the writer named in a temporary's ``{pid}@{host}-XXXX`` tag still runs. One on
    another host cannot be asked: its temporary counts as stale once older than this process."""
    pid, _, host = tag.rpartition("-")[0].partition("@")
    if host != HOST or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def writable_dir(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed; PermissionError (naming it) when this process cannot
    write there, so a command stops before its work rather than at its first write."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    return folder


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
