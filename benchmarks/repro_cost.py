"""What reproducing the paper costs: images to embed, GPU-hours, disk, the CPU-hours of the
active-learning runs and the wall time on a cluster (README "Reproduce the paper").

    python benchmarks/repro_cost.py                        # params.yaml, 50 AL slots, 4 GPUs
    python benchmarks/repro_cost.py --slots 100 --gpus 8 --params my.yaml

Measured (MEASURED_*): the seconds a query round of every strategy and a full 20-round CCMA
run take at CIFAR-100 scale on 2 CPU threads (benchmarks/al_speed.py), read from
data/bench/al_speed.json when it exists, else the numbers of benchmarks/README.md "Latest
results". Assumed, and named as such (ASSUMED_*): the GPU's sustained throughput, the image
decoding rate, and how a round's time grows with the pool size N and the classes K. The runs
are ccma_plan.al_runs over the parameter file, so a strategy subset costs what it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import ccma_plan as plan  # noqa: E402

CAL_PER_CLASS = 10  # splits.calibration-per-class: held out of the pool


@dataclass(frozen=True)
class Dataset:
    images: int        # train + test, what every backbone embeds
    classes: int       # K, and b = K labels a round
    train: int         # the pool before the calibration hold-out

    @property
    def pool(self) -> int:
        return self.train - CAL_PER_CLASS * self.classes


# Official splits (ccma.datasets); Caltech: stratified 80/20, round(20 %) of each class to test.
DATASETS = {
    "cifar100": Dataset(60_000, 100, 50_000),
    "food101": Dataset(101_000, 101, 75_750),
    "domainnet_real": Dataset(120_906 + 52_041, 345, 120_906),  # real_train.txt + real_test.txt
    "caltech101": Dataset(8_677, 101, 6_942),                   # BACKGROUND_Google dropped
    "caltech256": Dataset(29_780, 256, 23_824),                 # 257.clutter dropped
}


@dataclass(frozen=True)
class Encoder:
    dim: int           # stored embedding width
    width: int         # transformer width d
    layers: int
    mlp_ratio: float
    tokens: int = 257  # 224 px in patches of 14, plus the class token

    @property
    def gflop_per_image(self) -> float:
        """2 FLOP per weight per token: (4 + 2 * mlp_ratio) d^2 weights a layer (attention's
        T^2 term adds under 5 % at 257 tokens and is left out)."""
        return 2 * self.tokens * self.layers * (4 + 2 * self.mlp_ratio) * self.width ** 2 / 1e9


# The image towers, from the open_clip and transformers model configurations.
ENCODERS = {
    "clip-vit-l-14": Encoder(768, 1024, 24, 4.0),
    "dinov2-large": Encoder(1024, 1024, 24, 4.0),
    "clip-vit-g-14": Encoder(1024, 1408, 40, 4.3637),
}

# ASSUMED (not measured: no GPU was available to this project): one A100-class GPU sustains
# 60 TFLOP/s on these fp16/bf16 transformers (a fifth of the A100's 312 TFLOP/s dense peak),
# and 8 DataLoader workers decode and resize 1,000 JPEGs a second. A job runs at the slower
# of the two. benchmarks/embed_throughput.py measures both on a real node.
ASSUMED_TFLOPS = 60.0
ASSUMED_DECODE_IMG_PER_S = 1_000.0
# ASSUMED: a job also loads its model and starts its workers (5 minutes).
ASSUMED_JOB_OVERHEAD_S = 300.0

# MEASURED, benchmarks/README.md "Latest results" (2 shared CPU cores, pool 49,000, K = b =
# 100, student on 500 labels): median seconds of one query round on the full pool; alfamix,
# probcover and uherding from the --uncapped run.
MEASURED_POOL, MEASURED_K = 49_000, 100
MEASURED_QUERY_S = {
    "random": 0.0, "uncertainty": 0.210, "entropy": 0.262, "margins": 0.241, "bald": 9.25,
    "powerbald": 9.52, "badge": 1.79, "alfamix": 341.0, "coreset": 1.94, "typiclust": 8.79,
    "probcover": 95.0, "uherding": 105.0, "ccma": 0.221,
}
# MEASURED: the full 20-round CCMA run (26.5 s), split by phase.
MEASURED_RUN_S = {"loading": 1.8, "training": 11.4, "clustering": 8.1, "other": 0.7}
MEASURED_ROUNDS = 20

# ASSUMED: how a query round grows from (49,000, 100) to (N, K): a pass over the pool per
# class or per pick (N K); every pair of the pool (N^2); CCMA's kernel over kappa K
# candidates of a fixed subpool (K^2). Training grows with the labels (K), loading and the
# k-means subpool with N.
QUADRATIC = {"probcover", "uherding"}


def query_scale(strategy: str, ds: Dataset) -> float:
    n, k = ds.pool / MEASURED_POOL, ds.classes / MEASURED_K
    if strategy == "ccma":
        return k ** 2
    return n ** 2 if strategy in QUADRATIC else n * k


def measured(path: Path) -> tuple[dict, dict]:
    """Query seconds and run phases: al_speed.json's where it timed the full pool, else the
    README's."""
    query, run = dict(MEASURED_QUERY_S), dict(MEASURED_RUN_S)
    if path.is_file():
        result = json.loads(path.read_text())
        full = result.get("dataset", {}).get("n_pool")
        for name, s in result.get("strategies", {}).items():
            if name in query and s.get("n_pool") == full == MEASURED_POOL:
                query[name] = s["seconds"]
        for phase in run:
            run[phase] = result.get("ccma_run", {}).get(f"{phase}_seconds", run[phase])
    return query, run


def run_seconds(r: plan.Run, ds: Dataset, rounds: int, query: dict, phases: dict) -> float:
    """One `ccma run`: loading, a student a round, a query every round but the last, the
    evaluation; the reference-code preset re-clusters the pool every round (the others read
    the `clusters` stage's cache)."""
    n, k = ds.pool / MEASURED_POOL, ds.classes / MEASURED_K
    per_round = query[r.strategy] * query_scale(r.strategy, ds)
    if r.options.get("preset") == "reference-code":
        per_round += phases["clustering"] * n
    return (phases["loading"] * n + phases["training"] / MEASURED_ROUNDS * k * rounds
            + per_round * (rounds - 1) + phases["other"])


def group(r: plan.Run) -> str:
    """The table row of a run: its strategy, a preset, or CCMA's ablation or sensitivity runs."""
    if "variant" in r.options:
        return "ccma-V2..V5 (ablation)"
    if "name" in r.options:
        return "ccma-kappa*, ccma-tau* (sensitivity)"
    return r.name


def estimate(config: dict, slots: int, gpus: int, bench: Path) -> dict:
    query, phases = measured(bench)
    seeds, rounds = len(config["al"]["seeds"]), config["al"]["rounds"]
    runs = plan.al_runs(config)
    names = set(config["al"]["datasets"])
    backbones = sorted({config["backbones"]["teacher"], config["backbones"]["student"],
                        *(b for _, b in plan.reference_stores(config))})
    unknown = sorted((names - set(DATASETS)) | (set(backbones) - set(ENCODERS)))
    if unknown:
        raise SystemExit(f"repro_cost.py: no sizes for {', '.join(unknown)} (known: the paper's datasets "
                         f"{', '.join(DATASETS)} and backbones {', '.join(ENCODERS)})")
    embed = []
    for name in sorted(names):
        for b in backbones:
            enc, ds = ENCODERS[b], DATASETS[name]
            rate = min(ASSUMED_TFLOPS * 1e3 / enc.gflop_per_image, ASSUMED_DECODE_IMG_PER_S)
            embed.append({"dataset": name, "backbone": b, "images": ds.images, "img_per_s": rate,
                          "gpu_h": (ds.images / rate + ASSUMED_JOB_OVERHEAD_S) / 3600,
                          "feature_gb": ds.images * enc.dim * 2 / 1e9})
    al = {}
    for r in runs:
        s = run_seconds(r, DATASETS[r.dataset], rounds, query, phases)
        row = al.setdefault(group(r), {"runs": 0, "job_h": 0.0, "longest_h": 0.0, "query_s": query[r.strategy]})
        row["runs"] += seeds
        row["job_h"] += seeds * s / 3600
        row["longest_h"] = max(row["longest_h"], s / 3600)
    clusters_h = sum(phases["clustering"] * DATASETS[d].pool / MEASURED_POOL for d in names) * seeds / 3600 \
        if any(r.kmeans_subpool for r in runs) else 0.0
    gpu_h = sum(e["gpu_h"] for e in embed)
    al_h = sum(v["job_h"] for v in al.values()) + clusters_h
    longest = max(v["longest_h"] for v in al.values())
    wall = {"embed_h": max(gpu_h / gpus, max(e["gpu_h"] for e in embed)),
            "al_h": max(al_h / slots, longest)}
    return {"embed": embed, "al": al, "clusters_job_h": clusters_h, "gpu_h": gpu_h, "al_job_h": al_h,
            "al_core_h": 2 * al_h, "longest_run_h": longest, "wall": wall, "slots": slots, "gpus": gpus}


def report(e: dict) -> str:
    lines = ["| dataset | backbone | images | img/s (assumed) | GPU-h | features GB |", "|---|---|---:|---:|---:|---:|"]
    for x in e["embed"]:
        lines.append(f"| {x['dataset']} | {x['backbone']} | {x['images']:,} | {x['img_per_s']:,.0f} | "
                     f"{x['gpu_h']:.2f} | {x['feature_gb']:.2f} |")
    lines.append(f"| **total** | | {sum(x['images'] for x in e['embed']):,} | | **{e['gpu_h']:.1f}** | "
                 f"**{sum(x['feature_gb'] for x in e['embed']):.1f}** |")
    lines += ["", "| strategy | query s/round at CIFAR-100 (measured) | runs | job-hours (2 cores) | longest run, h |",
              "|---|---:|---:|---:|---:|"]
    for name, v in sorted(e["al"].items(), key=lambda kv: -kv[1]["job_h"]):
        lines.append(f"| {name} | {v['query_s']:.3g} | {v['runs']} | {v['job_h']:.1f} | {v['longest_h']:.2f} |")
    lines.append(f"| `ccma clusters` (k-means subpools) | | | {e['clusters_job_h']:.2f} | |")
    lines.append(f"| **total** | | **{sum(v['runs'] for v in e['al'].values())}** | **{e['al_job_h']:.0f}** "
                 f"({e['al_core_h']:.0f} core-hours) | {e['longest_run_h']:.1f} |")
    w = e["wall"]
    lines += ["", f"Wall time with {e['gpus']} GPUs and {e['slots']} AL jobs at once: embedding "
              f"{w['embed_h']:.1f} h (max of GPU-hours / GPUs and the longest job), then the AL runs "
              f"{w['al_h']:.1f} h (max of job-hours / slots and the longest run): about "
              f"{w['embed_h'] + w['al_h']:.0f} h."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--slots", type=int, default=50, help="AL jobs running at once (2 cores each)")
    parser.add_argument("--gpus", type=int, default=4, help="GPUs embedding at once")
    parser.add_argument("--bench", type=Path, default=ROOT / "data" / "bench" / "al_speed.json")
    args = parser.parse_args(argv)
    print(report(estimate(yaml.safe_load(args.params.read_text()), args.slots, args.gpus, args.bench)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
