"""The CCMA benchmark: datasets -> features -> splits -> active-learning runs -> report.

    snakemake --cores 8                                   # the paper's experiment (params.yaml)
    snakemake --cores 2 --configfile config/demo.yaml     # the offline demo
    dvc repro                                             # the same stages through DVC

Every stage is one ``ccma`` command (workflow/rules/*.smk); README "The workflow" explains
the parameters, selective recompute, conda and SLURM.
"""

import os
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod


configfile: "params.yaml"


sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))
import ccma_plan as plan  # noqa: E402

# Stop before any job runs, with one line: a bad or missing key, or --use-conda without conda
# (Snakemake would otherwise delete the outputs it is about to rerun, and only then fail).
_problem = plan.check_config(config, (workflow.configfiles or ["params.yaml"])[-1]) or plan.conda_missing(
    DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method,
    workflow.deployment_settings.conda_base_path,
)
if _problem:
    sys.exit(_problem)
# For workflow/envs/*.post-deploy.sh: install ccma into rule environments from this checkout.
os.environ.update(CCMA_WORKFLOW_ROOT=str(workflow.basedir))


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/prototypes.smk"
include: "workflow/rules/synth.smk"
include: "workflow/rules/splits.smk"
include: "workflow/rules/clusters.smk"
include: "workflow/rules/al.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    download,
    splits,
    aggregate,


rule all:
    input:
        rules.aggregate.output,
        [features(ds, b) for ds in [*IMAGE_DATASETS, *config["synthetic"]] for b in (TEACHER, STUDENT)],
        [prototypes(ds) for ds in [*IMAGE_DATASETS, *config["synthetic"]]],
    default_target: True
