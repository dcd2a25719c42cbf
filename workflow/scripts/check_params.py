"""The first stage of dvc.yaml: params.yaml checked as the Snakefile checks it.

    python workflow/scripts/check_params.py params.yaml STAMP [--dvc-yaml dvc.yaml]

DVC deletes a stage's outputs just before it runs the stage, so a value that only the
``ccma`` command rejects (``al.rounds: -5``) would cost the finished record it replaces.
Every other stage reads STAMP, so this one runs first; on a bad, missing or unknown key it
exits with the Snakefile's one line (ccma_plan.check_config) and `dvc repro` stops before
any other stage deletes anything. STAMP's content never changes, so a new valid params.yaml
reruns only the stages that read the values that changed. With --dvc-yaml it also stops when
that file is not the one workflow/scripts/write_dvc_yaml.py writes for these parameters (it
has one stage per strategy of al.strategies): after an edit of the list, DVC would
otherwise still run the strategies of the old one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ccma_plan as plan  # noqa: E402
import write_dvc_yaml  # noqa: E402

STAMP = f"checked against workflow/schemas/{plan.SCHEMA.name}\n"


def main(argv: list[str] | None = None) -> int | str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", type=Path, help="the parameter file (params.yaml)")
    parser.add_argument("stamp", type=Path, help="file written when the parameters are valid")
    parser.add_argument("--dvc-yaml", type=Path, help="also check that this dvc.yaml is current")
    args = parser.parse_args(argv)
    config = yaml.safe_load(args.params.read_text())
    problem = plan.check_config(config, str(args.params))
    if problem:
        return problem
    if args.dvc_yaml and args.dvc_yaml.read_text() != write_dvc_yaml.document(config):
        return (f"{args.dvc_yaml}: not written for {args.params} (al.strategies or the code "
                "changed); run python workflow/scripts/write_dvc_yaml.py, then dvc repro")
    args.stamp.parent.mkdir(parents=True, exist_ok=True)
    args.stamp.write_text(STAMP)
    return 0


if __name__ == "__main__":
    sys.exit(main())
