"""The AL loop (docs/method.md §1, §8, §13): determinism, resume after a kill, the run record, CLI errors,
and CCMA against random on the synthetic mismatch regime."""

import numpy as np
import pandas as pd
import pytest

from ccma import loop, record
from ccma.cli import main
from ccma.loop import RunConfig, run
from ccma.student import StudentConfig, train_student

from conftest import make_synthetic

TIMINGS = ["train_seconds", "query_seconds"]


def rows(path):
    return pd.read_parquet(path).drop(columns=TIMINGS)


def test_run_record_has_every_column(tmp_synth_dir):
    out = run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=1, rounds=3), progress=False)
    df = pd.read_parquet(out)
    assert list(df.columns) == list(record.COLUMNS)
    assert out == tmp_synth_dir / "runs" / "syn" / "ccma" / "seed1.parquet"
    assert df["round"].tolist() == [1, 2, 3] and df["n_labeled"].tolist() == [10, 20, 30]
    assert [len(q) for q in df["queried"]] == [10, 10, 0]
    diag = list(record.DIAGNOSTIC_COLUMNS)
    assert df[diag].notna().all().all(), "CCMA records every diagnostic, last round included"
    assert (df["set_size_teacher"] >= 3).all() and (df["set_size_student"] >= 5).all()
    assert df["query_seconds"].isna().tolist() == [False, False, True]
    cand = list(record.CANDIDATE_COLUMNS)
    assert df[cand].notna().all(axis=1).tolist() == [True, True, False], "no candidates on the last round"
    assert df[cand].iloc[:2].apply(lambda c: c.between(0, np.log(10))).all().all()
    assert (df["overlap_count"] >= 0).all() and (df["overlap"] <= 1).all()
    # a pool smaller than M: the k-means subpool is all of U, and the record says so
    assert df["fallback"].iloc[:2].str.contains("the same as no subpool").all()
    assert pd.isna(df["fallback"].iloc[2])
    assert 0 < df["teacher_zero_shot_accuracy"].iloc[0] < 1
    # queried are train rows of the pool, never calibration rows, never repeated
    from ccma.splits import load_splits, split_path
    splits = load_splits(split_path(tmp_synth_dir, "syn"))
    chosen = np.concatenate(df["queried"].tolist())
    assert np.isin(chosen, splits.pool).all() and len(np.unique(chosen)) == len(chosen)
    rnd = pd.read_parquet(run(RunConfig(tmp_synth_dir, "syn", "random", seed=1, rounds=2), progress=False))
    assert rnd[diag + cand].isna().all().all() and rnd["variant"].isna().all()


def test_same_seed_same_queries_different_seed_differs(tmp_synth_dir, tmp_path):
    a = run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=3, rounds=4), progress=False)
    b = run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=3, rounds=4, name="again"), progress=False)
    c = run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=4, rounds=4), progress=False)
    ra, rb, rc = rows(a), rows(b), rows(c)
    assert ra.drop(columns="strategy").equals(rb.drop(columns="strategy"))
    assert ra["queried"].map(list).tolist() != rc["queried"].map(list).tolist()


def test_every_strategy_shares_the_random_first_batch(tmp_synth_dir):
    a = run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=5, rounds=1), progress=False)
    b = run(RunConfig(tmp_synth_dir, "syn", "random", seed=5, rounds=1), progress=False)
    assert pd.read_parquet(a)["accuracy"].iloc[0] == pd.read_parquet(b)["accuracy"].iloc[0]


@pytest.mark.parametrize("strategy,variant", [("ccma", "V1"), ("ccma", "V3"), ("random", None)])
def test_resume_after_kill_equals_uninterrupted(tmp_synth_dir, monkeypatch, strategy, variant):
    params = {"variant": variant} if variant else {}
    full = rows(run(RunConfig(tmp_synth_dir, "syn", strategy, seed=2, rounds=5, params=params,
                              name="full"), progress=False))
    real_train = loop.train_student
    calls = {"n": 0}

    def killed_in_round_4(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the job were killed mid-round
        return real_train(*args, **kwargs)

    cfg = RunConfig(tmp_synth_dir, "syn", strategy, seed=2, rounds=5, params=params, name="killed")
    monkeypatch.setattr(loop, "train_student", killed_in_round_4)
    with pytest.raises(KeyboardInterrupt):
        run(cfg, progress=False)
    final = record.run_path(tmp_synth_dir, "syn", "killed", 2)
    assert not final.exists() and len(pd.read_parquet(record.partial_path(final))) == 3
    monkeypatch.setattr(loop, "train_student", real_train)
    resumed = rows(run(cfg, progress=False))
    assert not record.partial_path(final).exists()
    pd.testing.assert_frame_equal(resumed.drop(columns="strategy"), full.drop(columns="strategy"))


def test_partial_record_of_other_parameters_is_started_afresh(tmp_synth_dir, monkeypatch):
    """A run killed with b = 10 leaves a partial record; a run under the same name with
    b = 12 must not continue it (its stored params hash differs) but start over."""
    def config(budget, name):
        return RunConfig(tmp_synth_dir, "syn", "random", seed=2, rounds=4, budget=budget,
                         student=StudentConfig(max_epochs=30, patience=5), name=name)

    real_train, calls = loop.train_student, iter(range(1, 100))

    def killed_in_round_3(*args, **kwargs):
        if next(calls) == 3:
            raise KeyboardInterrupt
        return real_train(*args, **kwargs)

    monkeypatch.setattr(loop, "train_student", killed_in_round_3)
    with pytest.raises(KeyboardInterrupt):
        run(config(10, "same"), progress=False)
    partial = record.partial_path(record.run_path(tmp_synth_dir, "syn", "same", 2))
    assert len(pd.read_parquet(partial)) == 2
    monkeypatch.setattr(loop, "train_student", real_train)
    said = []
    other = rows(run(config(12, "same"), progress=False, log=said.append))
    fresh = rows(run(config(12, "fresh"), progress=False))
    assert not any("resuming" in line for line in said), said
    assert f"{partial}: an unfinished run with other parameters (budget 10 -> 12); discarded, the run " \
           "starts again from round 1" in said
    assert other["n_labeled"].tolist() == [12, 24, 36, 48]
    pd.testing.assert_frame_equal(other.drop(columns="strategy"), fresh.drop(columns="strategy"))


def cli_run(data_dir, *extra, seed="1", rounds="2"):
    return main(["run", "--data-dir", str(data_dir), "--dataset", "syn", "--strategy", "ccma",
                 "--seed", seed, "--rounds", rounds, "--no-progress", *extra])


def one_error_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_finished_record_of_other_parameters_is_never_replaced_silently(tmp_synth_dir, capsys):
    final = record.run_path(tmp_synth_dir, "syn", "ccma", 1)
    assert cli_run(tmp_synth_dir) == 0
    stamp = final.stat().st_mtime_ns
    assert cli_run(tmp_synth_dir) == 0 and "already complete" in capsys.readouterr().err
    for extra, what in ((["--kappa", "5"], "params.kappa 20.0 -> 5.0"), ([], "rounds 2 -> 1")):
        assert cli_run(tmp_synth_dir, *extra, rounds="2" if extra else "1") == 2
        assert one_error_line(capsys) == (
            f"ccma run: error: {final}: finished with other parameters ({what}); rerun with "
            "--overwrite to replace it, or give this run another --name to keep both")
        assert final.stat().st_mtime_ns == stamp
    assert cli_run(tmp_synth_dir, "--kappa", "5", "--name", "ccma-kappa5") == 0  # lands apart
    assert cli_run(tmp_synth_dir, "--kappa", "5", "--overwrite") == 0
    assert "replaced when this run finishes (--overwrite)" in capsys.readouterr().err
    assert record.read_rows(final)[1]["identity"]["params"]["kappa"] == 5
    apart = record.run_path(tmp_synth_dir, "syn", "ccma-kappa5", 1)
    pd.testing.assert_frame_equal(rows(final).drop(columns="strategy"), rows(apart).drop(columns="strategy"))


def _truncate(path, source=None):
    data = (source or path).read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_truncated_records(tmp_synth_dir, capsys):
    """A truncated partial record is discarded with a notice (the run starts again and ends
    as an uninterrupted one); a truncated finished record stops ccma run and ccma aggregate
    in one line, and --overwrite redoes it."""
    whole = record.run_path(tmp_synth_dir, "syn", "ccma", 1)
    assert cli_run(tmp_synth_dir) == 0
    again = record.run_path(tmp_synth_dir, "syn", "again", 1)
    partial = record.partial_path(again)
    partial.parent.mkdir(parents=True)
    _truncate(partial, source=whole)
    capsys.readouterr()
    assert cli_run(tmp_synth_dir, "--name", "again") == 0
    notice = [line for line in capsys.readouterr().err.splitlines() if "partial" in line]
    assert len(notice) == 1 and notice[0].startswith(f"{partial}: not a readable run record (ArrowInvalid: ")
    assert notice[0].endswith("; discarded, the run starts again from round 1")
    pd.testing.assert_frame_equal(rows(again).drop(columns="strategy"), rows(whole).drop(columns="strategy"))

    _truncate(whole)
    assert cli_run(tmp_synth_dir) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"ccma run: error: {whole}: not a readable run record (ArrowInvalid: ")
    assert err.endswith("; rerun with --overwrite to redo the run")
    assert main(["aggregate", "--data-dir", str(tmp_synth_dir), "--results-dir", str(tmp_synth_dir / "res")]) == 2
    err = one_error_line(capsys)
    assert err.startswith(f"ccma aggregate: error: {whole}: not a readable run record (ArrowInvalid: ")
    assert err.endswith("; rerun the `ccma run` that wrote it with --overwrite, or delete it")
    assert cli_run(tmp_synth_dir, "--overwrite") == 0
    pd.testing.assert_frame_equal(rows(again).drop(columns="strategy"), rows(whole).drop(columns="strategy"))


def test_stale_partial_beside_a_finished_record_is_removed(tmp_synth_dir, capsys):
    """Killed between the final record's rename and the partial's removal: both hold the
    same run. ccma aggregate and ccma run remove the partial; a partial of other parameters
    (an --overwrite run under way) stays and is reported as unfinished."""
    import shutil

    from ccma.report import load_runs

    final = record.run_path(tmp_synth_dir, "syn", "ccma", 1)
    partial = record.partial_path(final)
    assert cli_run(tmp_synth_dir) == 0
    shutil.copy(final, partial)
    assert main(["aggregate", "--data-dir", str(tmp_synth_dir), "--results-dir", str(tmp_synth_dir / "res"),
                 "--no-progress", "--dpi", "50"]) == 0
    assert "unfinished" not in capsys.readouterr().err and not partial.exists()
    shutil.copy(final, partial)
    assert cli_run(tmp_synth_dir) == 0 and not partial.exists()

    other = record.run_path(tmp_synth_dir, "syn", "other", 1)
    assert cli_run(tmp_synth_dir, "--kappa", "5", "--name", "other") == 0
    shutil.copy(other, partial)
    assert cli_run(tmp_synth_dir) == 0 and partial.exists()
    assert ("syn/ccma/seed1.partial.parquet: unfinished run with other parameters than the finished "
            "record beside it") in "\n".join(load_runs(tmp_synth_dir).warnings) and partial.exists()


def test_run_removes_temporaries_of_killed_writes_on_start(tmp_synth_dir, monkeypatch):
    import os
    import time

    from ccma import atomic

    assert cli_run(tmp_synth_dir) == 0
    folder = record.run_path(tmp_synth_dir, "syn", "ccma", 1).parent
    killed = [folder / f".seed1.partial.parquet.tmp-{2 ** 22 + 1}@{atomic.HOST}-k1",  # no such pid
              folder / ".seed1.parquet.tmp-k2"]
    live = folder / f".seed1.parquet.tmp-{os.getpid()}@{atomic.HOST}-l3"
    for path in (*killed, live):
        path.write_bytes(b"PAR1")
    monkeypatch.setattr(atomic, "STARTED", time.time() + 1)  # as if started after the kill
    monkeypatch.setattr(loop, "train_student", None)  # finished: nothing may be trained
    assert cli_run(tmp_synth_dir) == 0
    assert sorted(p.name for p in folder.iterdir()) == [live.name, "seed1.parquet"]


def test_student_training_is_bit_for_bit_deterministic(rng):
    x = rng.normal(size=(60, 12)).astype(np.float32)
    y = rng.integers(0, 4, 60)
    a = train_student(x, y, 4, StudentConfig(), seed=9)
    b = train_student(x, y, 4, StudentConfig(), seed=9)
    c = train_student(x, y, 4, StudentConfig(), seed=10)
    assert np.array_equal(a.logits(x), b.logits(x)) and a.epochs == b.epochs
    assert not np.array_equal(a.logits(x), c.logits(x))
    assert np.array_equal(a.mc_proba(x, 3, seed=1), b.mc_proba(x, 3, seed=1))


def test_student_early_stopping_and_best_checkpoint(rng):
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    cfg = StudentConfig(patience=5, max_epochs=300)
    s = train_student(x, y, 3, cfg, seed=0)
    assert s.epochs < 300
    capped = train_student(x, y, 3, StudentConfig(max_epochs=7), seed=0)
    assert capped.epochs == 7
    # The returned weights are those of the lowest-training-loss epoch, evaluated in eval mode.
    assert np.isfinite(s.train_loss) and s.train_loss <= capped.train_loss + 1e-9
    assert s.net.norm.affine is False and s.net.dropout == 0.75


def aulc(acc):
    return np.trapezoid(acc) / (len(acc) - 1)


def test_ccma_beats_random_on_mismatch(tmp_path):
    """K=10, 800 train / 300 test, d_T 32, d_S 48, b=10, T=20, seeds 1, 10, 100: at this size
    the seed-mean AULC gap was about +0.02 (ccma 0.644 vs random 0.625 when measured)."""
    make_synthetic(tmp_path, "mm", "mismatch")
    means = {}
    for strategy in ("ccma", "random"):
        means[strategy] = np.mean([
            aulc(pd.read_parquet(run(RunConfig(tmp_path, "mm", strategy, seed=s), progress=False))["accuracy"])
            for s in (1, 10, 100)
        ])
    assert means["ccma"] > means["random"], means


@pytest.mark.parametrize("argv,flag", [
    (["--strategy", "nope"], "--strategy"),
    (["--strategy", "ccma", "--k-teacher", "11"], "--k-teacher"),
    (["--strategy", "ccma", "--k-student", "0"], "--k-student"),
    (["--strategy", "ccma", "--budget", "100"], "--budget"),
    (["--strategy", "ccma", "--kappa", "0.5"], "--kappa"),
    (["--strategy", "ccma", "--rounds", "0"], "--rounds"),
    (["--strategy", "random", "--kappa", "3"], "--kappa"),
    (["--strategy", "ccma", "--variant", "V9"], "--variant"),
    (["--strategy", "ccma", "--calibration", "coverage", "--calibrate-on", "subpool"], "--calibrate-on"),
])
def test_bad_cli_values_give_one_line_naming_the_option(synth_dir, capsys, argv, flag):
    with pytest.raises(SystemExit) if flag == "--variant" else _nothing():
        code = main(["run", "--data-dir", str(synth_dir), "--dataset", "syn", "--seed", "1", *argv])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err, err
    assert not (synth_dir / "runs").exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_bad_store_gives_one_line(tmp_path, capsys):
    assert main(["run", "--data-dir", str(tmp_path), "--dataset", "ghost", "--strategy", "ccma",
                 "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ghost" in err and "does not exist" in err


def test_cli_help_lists_parameters_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    for text in ("--kappa", "--tau", "--k-teacher", "--subpool-size", "--preset", "--variant",
                 "--dropout", "(default: 0.75)", "--max-epochs", "(default: 400)", "--rounds"):
        assert text in out, text
