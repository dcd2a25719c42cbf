"""A run whose finished record has these parameters answers from the splits file and the
prototype store's attributes, without reading the feature stores; anything else takes the
full path."""

import shutil

import pytest

from ccma import loop, record
from ccma.errors import StoreError
from ccma.features import feature_path
from ccma.loop import RunConfig, run


def test_finished_run_is_recognised_without_the_feature_stores(tmp_synth_dir, monkeypatch):
    cfg = RunConfig(tmp_synth_dir, "syn", "ccma", seed=1, rounds=2)
    final = run(cfg, progress=False)
    stamp = final.stat().st_mtime_ns
    record.write_rows(record.partial_path(final), [], {})  # stale: left by a kill after the rename
    shutil.rmtree(feature_path(tmp_synth_dir, "syn", cfg.student_backbone))  # the full path cannot run now
    said = []
    assert run(cfg, progress=False, log=said.append) == final
    assert said == [f"{final}: already complete with these parameters"]
    assert final.stat().st_mtime_ns == stamp and not record.partial_path(final).exists()

    # other parameters, or a record it cannot judge, take the full path (which reads the stores)
    loaded = []

    def load(*args):
        loaded.append(args)
        raise StoreError("store", "read")

    monkeypatch.setattr(loop, "load_run_data", load)
    with pytest.raises(StoreError):
        run(RunConfig(tmp_synth_dir, "syn", "ccma", seed=1, rounds=3), progress=False)
    final.write_bytes(b"not parquet")
    with pytest.raises(StoreError):
        run(cfg, progress=False)
    assert len(loaded) == 2
