"""How long the ``ccma`` command itself takes where it should answer at once.

Each line is the median wall time of ``--repeat`` fresh processes (python -m ccma.cli ...):
  help          ccma --help                                    target < 1 s
  run-help      ccma run --help                                target < 1 s
  bad-command   ccma nosuch (a mistyped command)               target < 1 s
  bad-option    ccma run --dataset syn (a required option missing)   target < 1 s
  complete-run  ccma run ... whose record is already complete  target < 2 s
  aggregate     ccma aggregate over --runs fake run records    target < 30 s for 400 runs
                (one process, timed once: it writes every table and figure)
The complete run uses the synthetic benchmark (``--scale small``: 3,000 rows; ``cifar100``:
50,000 rows of d 768 / 1,024, where reading the feature stores dominates a full start). The
fake runs are 20 rounds of b = 100 labels, 18 run names (the registry's strategies and CCMA's
ablation variants) x 3 seeds per dataset, the shape of the paper's 405 runs.

``--src DIR`` times another checkout's ``ccma`` (e.g. ``git worktree add /tmp/before HEAD``)
with this script's data, for before/after numbers. Targets are printed, never asserted.
``python benchmarks/cli_speed.py [--runs 400] [--scale small] [--src DIR]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccma import record  # noqa: E402

ROUNDS, BUDGET, SEEDS = 20, 100, (1, 2, 3)
CCMA_RUNS = {"ccma": {}, "ccma-V2": {"variant": "V2"}, "ccma-V3": {"variant": "V3"},
             "ccma-V4": {"variant": "V4"}, "ccma-V5": {"variant": "V5"},
             "ccma-reference-code": {"preset": "reference-code"}}
TARGETS = {"help": 1, "run-help": 1, "bad-command": 1, "bad-option": 1, "complete-run": 2}


def timed(src: Path, args: list[str], repeat: int, expect: int = 0) -> float:
    """Median wall seconds of ``repeat`` fresh ``ccma args`` processes run from ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "ccma.cli", *args], env=env, cwd=src,
                              capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode != expect:
            raise SystemExit(f"ccma {' '.join(args)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return statistics.median(times)


def synth_data(data_dir: Path, scale: str) -> list[str]:
    """The synthetic dataset, its splits and one finished 2-round run; the run's arguments."""
    from ccma.cli import main

    common = ["--data-dir", str(data_dir), "--dataset", "syn"]
    if not (data_dir / "splits" / "syn.npz").exists():
        assert main(["synth", *common, "--regime", "mismatch", "--scale", scale]) == 0
        assert main(["splits", *common]) == 0
    run = ["run", *common, "--strategy", "ccma", "--seed", "0", "--rounds", "2", "--no-progress"]
    assert main(run) == 0
    return run


def fake_runs(data_dir: Path, n: int, seed: int = 0) -> int:
    """``n`` finished run records (``ROUNDS`` rounds of ``BUDGET`` labels) over as many
    datasets as it takes; returns how many were written."""
    from ccma.strategies import REGISTRY, get_strategy

    names = {**{s: (s, {}) for s in sorted(REGISTRY) if s != "ccma"},
             **{run: ("ccma", get_strategy("ccma").effective(p)) for run, p in CCMA_RUNS.items()}}
    rng = np.random.default_rng(seed)
    written = 0
    for d in range(-(-n // (len(names) * len(SEEDS)))):
        dataset = f"fake{d}"
        for run, (base, params) in names.items():
            for s in SEEDS:
                if written == n:
                    return written
                curve = np.sort(rng.uniform(0.3, 0.9, ROUNDS))
                identity = {"dataset": dataset, "strategy": base, "params": params, "rounds": ROUNDS,
                            "budget": BUDGET, "init": "random", "seed": s, "teacher": "clip-vit-l-14",
                            "student": "dinov2-large", "student_config": {}, "pool": "fake"}
                rows = [{
                    "dataset": dataset, "strategy": run, "preset": params.get("preset"),
                    "variant": params.get("variant"), "params_hash": f"{run}-{s}", "seed": s, "round": t,
                    "n_labeled": BUDGET * t, "accuracy": float(curve[t - 1]), "train_seconds": 0.5,
                    "query_seconds": None if t == ROUNDS else 1.0,
                    "queried": [] if t == ROUNDS else rng.choice(50_000, BUDGET, replace=False).tolist(),
                    "teacher_zero_shot_accuracy": 0.6,
                    **{c: (float(rng.uniform()) if base == "ccma" else None)
                       for c in record.DIAGNOSTIC_COLUMNS + record.CANDIDATE_COLUMNS},
                    "fallback": None,
                } for t in range(1, ROUNDS + 1)]
                record.write_rows(record.run_path(data_dir, dataset, run, s), rows,
                                  {"params_hash": f"{run}-{s}", "identity": identity, "run_name": run})
                written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench" / "cli_speed")
    ap.add_argument("--src", type=Path, default=ROOT, help="checkout whose ccma is timed")
    ap.add_argument("--runs", type=int, default=400, help="fake run records for aggregate (0: skip)")
    ap.add_argument("--scale", default="small", choices=["small", "cifar100"])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    src = args.src.resolve()
    synth_dir = (args.cache_dir / f"synth-{args.scale}").resolve()
    run = synth_data(synth_dir, args.scale)
    results = {
        "help": timed(src, ["--help"], args.repeat),
        "run-help": timed(src, ["run", "--help"], args.repeat),
        "bad-command": timed(src, ["nosuch"], args.repeat, expect=2),
        "bad-option": timed(src, ["run", "--dataset", "syn"], args.repeat, expect=2),
        "complete-run": timed(src, run, args.repeat),
    }
    print(f"ccma from {src} ({os.cpu_count()} CPUs)")
    for name, seconds in results.items():
        print(f"  {name:<13} {seconds:7.2f} s   (target < {TARGETS[name]} s)")
    if args.runs:
        runs_dir = (args.cache_dir / f"runs-{args.runs}").resolve()
        if not (runs_dir / "runs").exists():
            fake_runs(runs_dir, args.runs)
        seconds = timed(src, ["aggregate", "--data-dir", str(runs_dir), "--results-dir",
                              str(runs_dir / "results"), "--no-progress"], 1)
        print(f"  {'aggregate':<13} {seconds:7.2f} s   ({args.runs} runs; target < 30 s for 400)")


if __name__ == "__main__":
    main()
