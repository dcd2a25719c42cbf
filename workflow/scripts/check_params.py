"""The first stage of dvc.yaml: params.yaml checked as the Snakefile checks it.

    python workflow/scripts/check_params.py params.yaml STAMP

DVC deletes a stage's outputs just before it runs the stage, so a value that only the
``ccma`` command rejects (``al.rounds: -5``) would cost the finished record it replaces.
Every other stage reads STAMP, so this one runs first; on a bad, missing or unknown key it
exits with the Snakefile's one line (ccma_plan.check_config) and `dvc repro` stops before
any other stage deletes anything. STAMP's content never changes, so a new valid params.yaml
reruns only the stages that read the values that changed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ccma_plan as plan  # noqa: E402

STAMP = f"checked against workflow/schemas/{plan.SCHEMA.name}\n"


def main(argv: list[str] | None = None) -> int | str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("params", type=Path, help="the parameter file (params.yaml)")
    parser.add_argument("stamp", type=Path, help="file written when the parameters are valid")
    args = parser.parse_args(argv)
    problem = plan.check_config(yaml.safe_load(args.params.read_text()), str(args.params))
    if problem:
        return problem
    args.stamp.parent.mkdir(parents=True, exist_ok=True)
    args.stamp.write_text(STAMP)
    return 0


if __name__ == "__main__":
    sys.exit(main())
