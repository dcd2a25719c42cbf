"""Damaged inputs and unwritable folders end every command in one line on stderr, exit 2."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from pathlib import Path

import pytest

from ccma.cli import main
from ccma.features import feature_path

# ------------------------------------------------------------------ a read-only folder
# Tests run as root (here and in CI), where chmod cannot deny a write. An audit hook denies
# them instead, as the kernel would for a read-only folder: every open for writing and every
# change of an entry below the folder raises PermissionError naming the path.

_READ_ONLY: list[str] = []
CHANGES = {"os.rename", "os.remove", "os.rmdir", "os.truncate", "os.chmod", "os.utime",
           "os.symlink", "os.link", "shutil.rmtree"}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _inside(path) -> bool:
    if not isinstance(path, (str, bytes, os.PathLike)):
        return False  # a file descriptor
    path = os.path.abspath(os.fsdecode(path))
    return path == _READ_ONLY[0] or path.startswith(_READ_ONLY[0] + os.sep)


def _deny_writes(event: str, args: tuple) -> None:
    if not _READ_ONLY:
        return
    if event == "open":
        path, mode, flags = args
        writes = bool(mode and set(mode) & set("wax+")) or bool(isinstance(flags, int) and flags & WRITE_FLAGS)
    elif event == "os.mkdir":  # the kernel says EEXIST or ENOENT before EACCES
        path = args[0]
        writes = _inside(path) and os.path.isdir(os.path.dirname(os.path.abspath(os.fsdecode(path)))) \
            and not os.path.exists(path)
    elif event in CHANGES:
        path, writes = args[0], True
    else:
        return
    if writes and _inside(path):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(path))


sys.addaudithook(_deny_writes)  # hooks cannot be removed; this one acts only inside read_only()


@contextlib.contextmanager
def read_only(folder: Path):
    _READ_ONLY[:] = [str(folder.resolve())]
    try:
        yield
    finally:
        _READ_ONLY.clear()


def test_the_simulated_read_only_folder_denies_writes_only(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with read_only(tmp_path):
        assert (tmp_path / "a.txt").read_text() == "x"
        for write in (lambda: (tmp_path / "b.txt").write_text("y"), lambda: (tmp_path / "d").mkdir(),
                      lambda: (tmp_path / "a.txt").unlink(), lambda: os.open(tmp_path / "c", os.O_CREAT)):
            with pytest.raises(PermissionError):
                write()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_commands_that_write_fail_in_one_line_on_a_read_only_data_dir(tmp_synth_dir, tmp_path, capsys):
    data = ["--data-dir", str(tmp_synth_dir), "--dataset", "syn"]
    commands = {  # command -> the folder it is refused to write in
        "run": (["run", *data, "--strategy", "random", "--seed", "1", "--rounds", "2"], "runs"),
        "synth": (["synth", "--data-dir", str(tmp_synth_dir), "--dataset", "new", "--regime", "aligned",
                   "--n-train", "200", "--n-test", "50"], "features"),
        "splits": (["splits", *data], "splits"),
        "clusters": (["clusters", *data, "--seed", "1", "--subpool-size", "50"], "clusters"),
        "embed": (["embed", "--data-dir", str(tmp_synth_dir), "--dataset", "digits", "--backbone",
                   "tiny-dinov2", "--device", "cpu", "--workers", "0", "--no-progress"], "features/digits"),
    }
    with read_only(tmp_synth_dir):
        for command, (argv, folder) in commands.items():
            before = sorted(p.relative_to(tmp_synth_dir) for p in tmp_synth_dir.rglob("*"))
            assert main(argv) == 2, command
            err = one_line(capsys)
            assert err.startswith(f"ccma {command}: error: {tmp_synth_dir / folder}"), err
            assert err.endswith(f": Permission denied; ccma {command} needs to write there"), err
            assert sorted(p.relative_to(tmp_synth_dir) for p in tmp_synth_dir.rglob("*")) == before
    assert main(["run", *data, "--strategy", "random", "--seed", "1", "--rounds", "2", "--no-progress"]) == 0
    capsys.readouterr()
    results = tmp_path / "results"
    results.mkdir()
    with read_only(results):
        assert main(["aggregate", "--data-dir", str(tmp_synth_dir), "--results-dir", str(results),
                     "--no-progress"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"ccma aggregate: error: {results}/"), err
    assert err.endswith(": Permission denied; ccma aggregate needs to write there"), err
    assert list(results.iterdir()) == []


def test_finished_run_in_a_read_only_data_dir_is_reported(tmp_synth_dir, capsys):
    argv = ["run", "--data-dir", str(tmp_synth_dir), "--dataset", "syn", "--strategy", "random",
            "--seed", "1", "--rounds", "2", "--no-progress"]
    assert main(argv) == 0
    capsys.readouterr()
    with read_only(tmp_synth_dir):
        assert main(argv) == 0
    assert "already complete" in capsys.readouterr().err


# ------------------------------------------------------------------ damaged stores, end to end

def test_damaged_stores_stop_run_and_splits_in_one_line(tmp_synth_dir, capsys):
    """A deleted label chunk of the student store was blamed on row order; a corrupt chunk
    of the teacher store was an 88-line numcodecs traceback."""
    from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER

    student = feature_path(tmp_synth_dir, "syn", DEFAULT_STUDENT)
    (student / "test" / "labels" / "c" / "0").unlink()
    assert main(["run", "--data-dir", str(tmp_synth_dir), "--dataset", "syn", "--strategy", "random",
                 "--seed", "1"]) == 2
    assert one_line(capsys) == (
        f"ccma run: error: {student}: array 'test/labels' lacks 1 of its 1 chunk files (deleted or never "
        "written); delete the store and rerun the `ccma synth --dataset syn --regime mismatch` that wrote it")
    teacher = feature_path(tmp_synth_dir, "syn", DEFAULT_TEACHER)
    chunk = teacher / "train" / "embeddings" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    assert main(["splits", "--data-dir", str(tmp_synth_dir), "--dataset", "syn"]) == 2
    err = one_line(capsys)
    assert err.startswith(f"ccma splits: error: {teacher}: array 'train/embeddings' has a truncated or "
                          "corrupt chunk (RuntimeError: Zstd decompression error"), err
    assert err.endswith("; delete the store and rerun the `ccma synth --dataset syn --regime mismatch` that wrote it")
    assert not (tmp_synth_dir / "runs").exists()


def test_damaged_splits_file_names_itself_and_the_remedy(tmp_path):
    from ccma.errors import CCMAError
    from ccma.splits import load_splits

    path = tmp_path / "syn.npz"
    path.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CCMAError) as err:
        load_splits(path)
    message = str(err.value)
    assert str(path) in message and "rerun `ccma splits`" in message and "\n" not in message
