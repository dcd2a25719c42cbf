# Names and helpers shared by the stage files. No rules here (snakemake --lint keeps
# functions and rules in separate files).

import os
import re

DATA = config["data_dir"]
RESULTS = config["results_dir"]
LOGS = f"{DATA}/logs"
TEACHER = config["backbones"]["teacher"]
STUDENT = config["backbones"]["student"]
SEEDS = config["al"]["seeds"]
IMAGE_DATASETS = config["datasets"]["download"] + config["datasets"]["local"]
RUNS = {(r.dataset, r.name): r for r in plan.al_runs(config)}
# The reference-code runs' teacher stores on image datasets (when it is not TEACHER): embed
# and prototypes build them like TEACHER's.
REFERENCE_STORES = plan.reference_stores(config)
TEACHERS = [TEACHER, *sorted({backbone for _, backbone in REFERENCE_STORES})]
ROOT = Path(workflow.basedir)

# torch's default thread pool spins on a shared machine: every job gets exactly its cores.
PIN = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "


def code(*modules):
    """The ccma source files behind ``modules``, as inputs: a code change reruns the job."""
    return [os.path.relpath(ROOT / p) for p in plan.sources(ROOT, *modules)]


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(str(n)) for n in names) or "(?!)"


def up(levels):
    """params function: the directory ``levels`` above the first output (the data or results
    directory), derived from the file rather than hard-coded, as the linter asks."""
    return lambda wildcards, output: str(Path(output[0]).parents[levels])


def features(dataset, backbone):
    return f"{DATA}/features/{dataset}/{backbone}.zarr"


def raw_input(dataset):
    """The downloaded files of ``dataset``; none for datasets that need no download."""
    return [f"{DATA}/raw/{dataset}"] if dataset in config["datasets"]["download"] else []


def prototypes(dataset, teacher=TEACHER):
    return f"{DATA}/prototypes/{dataset}/{teacher}.zarr"


def run_file(dataset, run, seed):
    return f"{DATA}/runs/{dataset}/{run}/seed{seed}.parquet"


def all_run_files():
    return [run_file(r.dataset, r.name, seed) for r in RUNS.values() for seed in SEEDS]


def run_data(dataset, teacher=TEACHER):
    """What ``ccma run`` and ``ccma clusters`` read: both stores, the prototypes, the splits."""
    return {
        "teacher": features(dataset, teacher),
        "student": features(dataset, STUDENT),
        "prototypes": prototypes(dataset, teacher),
        "splits": f"{DATA}/splits/{dataset}.npz",
    }


def al_inputs(wildcards):
    run = RUNS[wildcards.dataset, wildcards.run]
    inputs = run_data(wildcards.dataset, run.teacher)
    inputs["code"] = code(run.module, *plan.MODULES["run"])
    if run.kmeans_subpool:
        inputs["clusters"] = plan.cluster_file(config, wildcards.dataset, wildcards.seed)
    return inputs

