"""``ccma --help`` and a mistyped command answer from the command list alone: nothing heavy
(torch, zarr, matplotlib) is imported for them (benchmarks/cli_speed.py times it)."""

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


@pytest.mark.parametrize("argv, code, shown", [
    (["--help"], 0, "import-features"),
    (["nosuch"], 2, "invalid choice: 'nosuch'"),
    ([], 2, "the following arguments are required: command"),
])
def test_command_list_imports_nothing_heavy(argv, code, shown):
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.split()[-1:] == [str(code)], done.stdout  # exit code, then no module names
    assert shown in done.stdout + done.stderr
