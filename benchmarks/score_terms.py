"""Does the teacher help? CCMA's score terms and presets on both synthetic regimes.

For each regime (``mismatch``, ``aligned``) a synthetic dataset with a pool larger than
CCMA's subpool (so that the subpool variants differ) is generated, and these runs are made
for every seed: ccma (paper preset), ccma (reference-code preset), ccma with ``score=entropy``
(u = H(p_S): the teacher removed from the score), ccma with ``score=js`` (u = JS only) and
random. Printed: AULC mean ± sd per run, and each run's paired per-seed difference to ccma
(paper) with a 95 % t confidence interval. Nothing here is tuned: the generator's regimes and
every CCMA default are used as they ship.

    python benchmarks/score_terms.py [--seeds 1 10 100 1000 10000] [--n-train 24000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RUNS = {  # run name -> (strategy, parameters)
    "ccma": ("ccma", {}),
    "ccma-reference-code": ("ccma", {"preset": "reference-code"}),
    "ccma-score-entropy": ("ccma", {"score": "entropy"}),
    "ccma-score-js": ("ccma", {"score": "js"}),
    "random": ("random", {}),
}


def make_dataset(data_dir: Path, regime: str, n_train: int) -> str:
    from ccma.loop import DEFAULT_STUDENT, DEFAULT_TEACHER
    from ccma.splits import make_splits, save_splits, split_path
    from ccma.synth import config_for, write

    name = f"synth-{regime}-{n_train // 1000}k"
    if not split_path(data_dir, name).exists():
        data = write(data_dir, name, config_for(regime, "small", n_train=n_train), regime,
                     DEFAULT_TEACHER, DEFAULT_STUDENT)
        save_splits(split_path(data_dir, name), make_splits(data.train_labels, len(data.test_labels),
                                                            per_class=10, seed=0))
    return name


def one_run(job: tuple) -> tuple[str, str, int, list[float], float]:
    data_dir, dataset, run_name, seed = job
    import torch

    from ccma.loop import RunConfig, run
    from ccma.record import read_rows

    torch.set_num_threads(1)
    strategy, params = RUNS[run_name]
    started = time.perf_counter()
    path = run(RunConfig(Path(data_dir), dataset, strategy, seed, params=params, name=run_name),
               progress=False, log=lambda msg: None)
    rows, _ = read_rows(path)
    return dataset, run_name, seed, [r["accuracy"] for r in rows], time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data/bench-score-terms"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 10, 100, 1000, 10000])
    parser.add_argument("--n-train", type=int, default=24_000,
                        help="train rows; the pool is this minus the calibration split")
    parser.add_argument("--regimes", nargs="+", default=["mismatch", "aligned"])
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    from ccma.metrics import aulc, paired_difference

    datasets = {regime: make_dataset(args.data_dir, regime, args.n_train) for regime in args.regimes}
    jobs = [(str(args.data_dir), ds, name, seed) for ds in datasets.values() for name in RUNS
            for seed in args.seeds]
    curves = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for ds, name, seed, acc, seconds in pool.map(one_run, jobs):
            curves[ds, name, seed] = acc
            print(f"{ds} {name} seed {seed}: AULC {aulc(acc):.4f} ({seconds:.0f} s)", file=sys.stderr)

    results = []
    for regime, ds in datasets.items():
        base = np.array([aulc(curves[ds, "ccma", s]) for s in args.seeds])
        print(f"\n{regime} ({ds}; {len(args.seeds)} seeds; AULC; difference = run - ccma (paper), "
              "paired by seed, 95 % t interval)")
        print(f"{'run':<22} {'AULC':>15} {'diff':>9} {'95 % CI':>20} {'seeds > ccma':>13}")
        for name in RUNS:
            values = np.array([aulc(curves[ds, name, s]) for s in args.seeds])
            mean, lo, hi = paired_difference(values, base)
            wins = int(np.sum(values > base))
            print(f"{name:<22} {values.mean():.4f} ± {values.std(ddof=1):.4f} {mean:+9.4f} "
                  f"[{lo:+.4f}, {hi:+.4f}] {wins:>7}/{len(values)}")
            results.append({"regime": regime, "dataset": ds, "run": name, "seeds": args.seeds,
                            "aulc": values.tolist(), "diff_vs_ccma": mean, "ci_low": lo, "ci_high": hi})
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
