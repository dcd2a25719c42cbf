"""The workflow on a real single-node SLURM cluster (issue 5): Debian's slurm-wlm, munge,
slurmdbd and MariaDB, brought up by .ci/slurm_cluster.sh as root and stopped again by PID.

A reduced demo (tests/test_workflow.small_config: digits through the tiny models, a
synthetic dataset, every kind of run) goes through `--executor slurm` with the repository's
workflow profile; the jobs must appear in sacct as COMPLETED (the executor plugin's own
status checks use sacct too) and every output must equal a local run's.

Run with `make test-slurm` (as root); `make test` leaves it out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from test_workflow import BIN, ROOT, make_project, small_config, snakemake

pytestmark = [pytest.mark.slurm,
              # Snakemake marks finished directory outputs with a .snakemake_timestamp file
              pytest.mark.filterwarnings("ignore:Object at .snakemake_timestamp:UserWarning")]

CLUSTER = ROOT / ".ci" / "slurm_cluster.sh"
WORKFLOW_TIMEOUT = 1200  # seconds; `timeout -k` kills a hung executor, which ignores SIGTERM
# The test node is small: every rule's resources scaled down to fit it (the profile's
# values are for a real cluster).
FIT = ["--set-threads", "synth=1", "embed=1", "prototypes=1", "clusters=1", "al=1",
       "--set-resources", "synth:mem_mb=600", "embed:mem_mb=1500", "prototypes:mem_mb=1000",
       "clusters:mem_mb=800", "al:mem_mb=700", "al:runtime=5", "embed:runtime=20",
       "--group-components", "al-batch=20"]
# Jobs the cluster runs: the rest (splits, aggregate, all) are local rules.
REMOTE_RULES = {"synth": 1, "embed": 2, "prototypes": 1, "clusters": 1}


def _sh(*args, timeout):
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.fail("the SLURM test starts system daemons: run it as root (make test-slurm)")
    if shutil.which("apt-get") is None:
        pytest.fail("the SLURM test installs Debian's slurm-wlm, munge, slurmdbd and mariadb-server: no apt-get here")
    _sh(CLUSTER, "install", timeout=1200)
    state = Path(os.environ.get("CCMA_SLURM_STATE") or tmp_path_factory.mktemp("slurm"))
    try:
        _sh(CLUSTER, "start", state, timeout=300)
        yield state
    finally:
        _sh(CLUSTER, "stop", state, timeout=120)


def _records(project: Path) -> dict[str, list[dict]]:
    timing = {"train_seconds", "query_seconds"}
    return {str(p.relative_to(project)): [{k: v for k, v in row.items() if k not in timing}
                                          for row in pq.read_table(p).to_pylist()]
            for p in sorted((project / "data" / "runs").rglob("seed*.parquet"))}


def _arrays(project: Path) -> dict[str, np.ndarray]:
    """Every array the workflow wrote besides the run records: splits, k-means caches,
    feature and prototype stores (read through zarr, so chunk layout does not matter)."""
    import zarr

    out = {}
    for npz in sorted((project / "data").rglob("*.npz")):
        with np.load(npz) as data:
            out.update({f"{npz.relative_to(project)}:{k}": data[k] for k in data.files})
    for store in sorted((project / "data").rglob("*.zarr")):
        group = zarr.open_group(store, mode="r")
        for name, array in group.arrays():
            out[f"{store.relative_to(project)}:{name}"] = array[...]
        for name, sub in group.groups():
            for aname, array in sub.arrays():
                out[f"{store.relative_to(project)}:{name}/{aname}"] = array[...]
    return out


def test_reduced_demo_on_slurm_equals_local_run(cluster, tmp_path):
    local = make_project(tmp_path / "local", small_config())
    snakemake(local, "--set-threads", "al=1", "clusters=1", "embed=1", "prototypes=1")

    project = make_project(tmp_path / "slurm", small_config())
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 5))
    started = time.monotonic()
    proc = subprocess.run(
        ["timeout", "-k", "15", str(WORKFLOW_TIMEOUT), BIN / "snakemake", "--workflow-profile",
         "workflow/profiles/slurm", "--jobs", "4", "--cores", "2",
         "--slurm-init-seconds-before-status-checks", "5", *FIT],
        cwd=project, capture_output=True, text=True, timeout=WORKFLOW_TIMEOUT + 60,
        env={**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])})
    wall = time.monotonic() - started
    assert proc.returncode == 0, f"exit {proc.returncode} after {wall:.0f}s:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    print(f"SLURM workflow: {wall:.0f} s", file=sys.stderr)

    rows = _sh("sacct", "-X", "--parsable2", "--noheader", "--starttime", since,
               "--format=JobID,JobName,State,Comment", timeout=60).stdout.splitlines()
    jobs = [dict(zip(("id", "name", "state", "comment"), r.split("|"))) for r in rows if r.strip()]
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs
    def rule_of(job):
        return next((r for r in REMOTE_RULES if job["comment"].startswith(f"rule_{r}_")), None)

    for rule, count in REMOTE_RULES.items():
        assert sum(rule_of(j) == rule for j in jobs) == count, (rule, jobs)
    # and one more: the 17 AL runs of the reduced demo, submitted as one batch (the group)
    assert len([j for j in jobs if rule_of(j) is None]) == 1, jobs

    assert _records(project) == _records(local)
    mine, theirs = _arrays(project), _arrays(local)
    assert mine.keys() == theirs.keys()
    for key in mine:
        np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    assert (project / "results" / "report.html").exists()
