"""Damaged inputs and unwritable folders end every command in one line on stderr, exit 2."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from dataclasses import fields
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


# ------------------------------------------------------------------ values (issue 11)
# Every bad value stops the command before any data is trained on: one line naming the
# option, exit status 2, nothing written.

def _files(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")}


def _bad_values(r) -> list:
    """Values just outside the range ``r``, found independently of its own test."""
    bad = []
    if r.low is not None:
        bad.append(r.low if r.low_open else r.low - 1)
    if r.high is not None:
        bad.append(r.high if r.high_open else r.high + 0.5)
    if r.words:
        bad.append("abc")
    return bad


def _owners() -> dict:
    """Option name -> (command, strategy) that takes it."""
    from ccma.strategies import REGISTRY
    from ccma.student import StudentConfig

    owners = {f.name: ("run", "random") for f in fields(StudentConfig)}
    owners.update({n: ("run", "random") for n in ("seed", "rounds", "budget", "threads")})
    for strategy in REGISTRY.values():
        for param in strategy.params:
            if param.range is not None:
                owners.setdefault(param.name, ("run", strategy.name))
    owners.update({n: ("splits", None) for n in ("calibration_per_class", "split_seed")})
    return owners


def test_every_ranged_option_is_declared_by_a_command():
    """Every numeric option of the strategies, the student and CCMA has a range, and every
    range belongs to an option: a new parameter cannot skip the checks."""
    from ccma.acquisition import CCMAParams
    from ccma.parameters import RANGES
    from ccma.strategies import REGISTRY
    from ccma.student import StudentConfig

    numeric = {f.name for cls in (StudentConfig, CCMAParams) for f in fields(cls)
               if type(f.default) in (int, float)}
    numeric |= {p.name for s in REGISTRY.values() for p in s.params if p.type in (int, float)}
    assert numeric <= set(RANGES), numeric - set(RANGES)
    assert set(_owners()) - {"device"} == set(RANGES)


def _walk_cases():
    from ccma.parameters import RANGES

    for name, (command, strategy) in _owners().items():
        for bad in ([] if name == "device" else _bad_values(RANGES[name])):
            yield pytest.param(name, command, strategy, bad, id=f"{name}={bad}")


@pytest.mark.parametrize("name, command, strategy, bad", list(_walk_cases()))
def test_every_out_of_range_value_stops_the_command(tmp_synth_dir, capsys, name, command, strategy, bad):
    flag = "--" + name.replace("_", "-")
    argv = [command, "--data-dir", str(tmp_synth_dir), "--dataset", "syn"]
    if command == "run":
        argv += ["--strategy", strategy, "--rounds", "2", "--no-progress"]
        argv += [] if name == "seed" else ["--seed", "1"]
    before = _files(tmp_synth_dir)
    assert main([*argv, flag, str(bad)]) == 2
    assert one_line(capsys).startswith(f"ccma {command}: error: {flag} must be "), name
    assert _files(tmp_synth_dir) == before


@pytest.mark.parametrize("name", ["seed", "subpool_size", "per_cluster", "kmeans_iters"])
def test_clusters_checks_its_options(tmp_synth_dir, capsys, name):
    from ccma.parameters import RANGES

    flag = "--" + name.replace("_", "-")
    given = {"--seed": "1", "--subpool-size": "50", flag: str(_bad_values(RANGES[name])[0])}
    before = _files(tmp_synth_dir)
    assert main(["clusters", "--data-dir", str(tmp_synth_dir), "--dataset", "syn",
                 *[x for kv in given.items() for x in kv]]) == 2
    assert one_line(capsys).startswith(f"ccma clusters: error: {flag} must be "), name
    assert _files(tmp_synth_dir) == before


# The cases of the issue, with the line a user now sees (the report's table).
ISSUE_CASES = [
    (["--strategy", "ccma", "--calibration", "coverage", "--alpha", "1.5"], "--alpha must be in (0, 1), got 1.5"),
    (["--strategy", "ccma", "--alpha", "1.5"], "--alpha must be in (0, 1), got 1.5"),
    (["--strategy", "ccma", "--tau", "0"], "--tau must be > 0, got 0.0"),
    (["--strategy", "ccma", "--tau", "-0.1"], "--tau must be > 0, got -0.1"),
    (["--strategy", "ccma", "--sigma", "abc"], "--sigma must be median or a number > 0, got 'abc'"),
    (["--strategy", "ccma", "--sigma", "-1"], "--sigma must be median or a number > 0, got '-1'"),
    (["--strategy", "ccma", "--subpool-size", "0"], "--subpool-size must be >= 1, got 0"),
    (["--strategy", "ccma", "--kmeans-iters", "0"], "--kmeans-iters must be >= 1, got 0"),
    (["--strategy", "random", "--lr", "-1"], "--lr must be > 0, got -1.0"),
    (["--strategy", "random", "--weight-decay", "-1"], "--weight-decay must be >= 0, got -1.0"),
    (["--strategy", "random", "--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    (["--strategy", "random", "--max-epochs", "0"], "--max-epochs must be >= 1, got 0"),
    (["--strategy", "random", "--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--strategy", "random", "--dropout", "-0.5"], "--dropout must be in [0, 1), got -0.5"),
    (["--strategy", "random", "--seed", "-1"], "--seed must be >= 0, got -1"),
    (["--strategy", "random", "--device", "foo"],
     "--device must be auto, cpu, cuda, cuda:N or mps, got 'foo'"),
    (["--strategy", "random", "--device", "cuda"],
     "--device cuda: this machine has no CUDA GPU (torch.cuda.is_available() is False); "
     "use --device cpu or auto"),
]


@pytest.mark.parametrize("argv, message", ISSUE_CASES, ids=[" ".join(a[1:]) for a, _ in ISSUE_CASES])
def test_values_of_the_issue_stop_before_training(tmp_synth_dir, capsys, monkeypatch, argv, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a GPU machine

    def no_training(*args, **kwargs):
        raise AssertionError("trained before the values were checked")

    monkeypatch.setattr("ccma.loop.train_student", no_training)
    seed = [] if "--seed" in argv else ["--seed", "1"]
    before = _files(tmp_synth_dir)
    assert main(["run", "--data-dir", str(tmp_synth_dir), "--dataset", "syn", "--rounds", "2",
                 "--no-progress", *seed, *argv]) == 2
    assert one_line(capsys) == f"ccma run: error: {message}"
    assert _files(tmp_synth_dir) == before


def test_a_default_that_cannot_hold_is_clipped_with_a_notice(tmp_path, capsys):
    """k_student defaults to 5; with 4 classes it becomes 4 (one line), while a k_student of
    5 that the user gives stays an error."""
    from conftest import make_synthetic

    from ccma import record

    make_synthetic(tmp_path, "four", n_classes=4, n_train=300, n_test=100)
    argv = ["run", "--data-dir", str(tmp_path), "--dataset", "four", "--strategy", "ccma", "--seed", "1",
            "--rounds", "2", "--subpool-size", "100", "--no-progress"]
    assert main([*argv, "--k-student", "5"]) == 2
    assert one_line(capsys) == "ccma run: error: --k-student must be in (0, K=4], got 5.0"
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "--k-student: the default 5 exceeds the K=4 classes of four; using 4" in err.splitlines()
    meta = record.read_rows(record.run_path(tmp_path, "four", "ccma", 1))[1]
    assert meta["identity"]["params"]["k_student"] == 4 and meta["identity"]["params"]["k_teacher"] == 3


# ------------------------------------------------------------------ splits of another dataset

def test_splits_record_their_dataset_and_row_counts(tmp_synth_dir, capsys):
    import numpy as np

    from ccma.splits import split_path

    assert main(["splits", "--data-dir", str(tmp_synth_dir), "--dataset", "syn"]) == 0
    with np.load(split_path(tmp_synth_dir, "syn")) as data:
        assert (str(data["dataset"]), int(data["n_train"]), int(data["n_test"])) == ("syn", 800, 300)


def test_splits_of_another_dataset_stop_the_run(tmp_synth_dir, capsys):
    """The other dataset's row indices all fit this one's store, so the run used to go on with
    its smaller pool."""
    import shutil

    from conftest import make_synthetic

    from ccma.splits import split_path

    make_synthetic(tmp_synth_dir, "other", n_train=700)
    assert main(["splits", "--data-dir", str(tmp_synth_dir), "--dataset", "other"]) == 0
    capsys.readouterr()
    path = split_path(tmp_synth_dir, "syn")
    shutil.copy(split_path(tmp_synth_dir, "other"), path)
    argv = ["run", "--data-dir", str(tmp_synth_dir), "--dataset", "syn", "--strategy", "random",
            "--seed", "1", "--rounds", "2", "--no-progress"]
    before = _files(tmp_synth_dir)
    assert main(argv) == 2
    assert one_line(capsys) == (f"ccma run: error: {path}: was made for dataset 'other', not 'syn'; "
                                "rerun `ccma splits --dataset syn`")
    assert _files(tmp_synth_dir) == before


def test_splits_of_other_row_counts_stop_the_run_and_old_files_still_work(tmp_synth_dir, capsys):
    import numpy as np

    from ccma.splits import load_splits, split_path

    path = split_path(tmp_synth_dir, "syn")
    old = load_splits(path)
    np.savez(path, pool=old.pool[:-100], calibration=old.calibration, test=old.test, n_train=np.asarray(900))
    argv = ["run", "--data-dir", str(tmp_synth_dir), "--dataset", "syn", "--strategy", "random",
            "--seed", "1", "--rounds", "2", "--no-progress"]
    assert main(argv) == 2
    assert one_line(capsys) == (f"ccma run: error: {path}: was made for 900 train rows but the "
                                "feature store has 800; rerun `ccma splits --dataset syn`")
    np.savez(path, pool=old.pool, calibration=old.calibration, test=old.test)  # no metadata
    assert main(argv) == 0
