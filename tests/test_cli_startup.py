"""The command list, ``ccma run``'s options and mistakes, and every light subcommand's --help
answer from declarations alone: nothing heavy (torch, zarr, matplotlib, pandas, scipy) is
imported for them (benchmarks/cli_speed.py times it)."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "zarr", "matplotlib", "pandas", "scipy")
PROBE = """
import sys
from ccma.cli import main
try:
    code = main({argv!r})
except SystemExit as exc:
    code = exc.code
print(code, *sorted(m for m in {heavy!r} if m in sys.modules))
"""


def probe(argv: list[str]) -> tuple[list[str], str]:
    """``ccma argv`` in a fresh interpreter: [exit code, heavy modules imported...], output."""
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, check=True)
    return done.stdout.splitlines()[-1].split(), done.stdout + done.stderr


@pytest.mark.parametrize("argv, code, shown", [
    (["--help"], 0, "import-features"),
    (["nosuch"], 2, "invalid choice: 'nosuch'"),
    ([], 2, "the following arguments are required: command"),
    (["run", "--help"], 0, "--probcover-purity"),                       # every strategy's options
    (["run", "--dataset", "syn"], 2, "required: --strategy, --seed"),
    (["run", "--dataset", "syn", "--strategy", "ccma", "--seed", "0", "--kapa", "3"], 2,
     "unrecognized arguments: --kapa 3"),
    (["run", "--dataset", "syn", "--strategy", "ccma", "--seed", "0", "--variant", "V9"], 2,
     "invalid choice: 'V9'"),
])
def test_command_list_and_run_options_import_nothing_heavy(argv, code, shown):
    result, output = probe(argv)
    assert result == [str(code)], output  # the exit code, then no module names
    assert shown in output


@pytest.mark.parametrize("command", ["splits", "clusters", "aggregate", "download", "import-features",
                                     "import-prototypes", "embed", "prototypes", "fetch-weights", "session"])
def test_subcommand_help_imports_nothing_heavy(command):
    result, output = probe([command, "--help"])
    assert result == ["0"], output
    assert f"usage: ccma {command}" in output


def test_registry_lists_strategies_without_their_code():
    """Every catalogued strategy is in REGISTRY with its options; its module (and torch) is
    imported only when its query is first asked for, and it registers that query."""
    code = """
import sys
from ccma.strategies import REGISTRY
before = sorted(m for m in ("torch", "scipy", "ccma.strategies.typiclust") if m in sys.modules)
strategy = REGISTRY["typiclust"]
print(before, strategy.needs_student, [p.name for p in strategy.params])
print(strategy.query.__module__, "torch" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [
        "[] False ['typiclust_max_clusters', 'typiclust_knn', 'typiclust_min_size']",
        "ccma.strategies.typiclust True"]


def test_every_catalogued_strategy_registers_its_query():
    from ccma.strategies import REGISTRY, register

    for name, strategy in REGISTRY.items():
        assert strategy.query.__module__ == f"ccma.strategies.{name}"
    with pytest.raises(ValueError, match="not declared"):
        register("nosuch")(lambda ctx, budget, rng: None)
    with pytest.raises(ValueError, match="registered twice"):
        register("random")(lambda ctx, budget, rng: None)
