#!/usr/bin/env bash
# Install ccma from the repository the workflow runs from (the Snakefile exports its
# directory as CCMA_WORKFLOW_ROOT), editable so that the code the rules track as inputs
# is the code the jobs run. Dependencies come from the environment file.
set -euo pipefail
python -m pip install --no-deps --no-build-isolation --editable "${CCMA_WORKFLOW_ROOT:?run through the Snakefile}"
