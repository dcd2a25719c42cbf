"""`make mutate`: every deliberate bug of tools/mutations.yaml must fail the tests named for it.

Each mutation replaces one exact snippet of one file. The working tree is never written:
ccma/, tests/ and pyproject.toml are copied to a temporary folder (one per worker), a mutant
is written into the copy, only its named tests run there (``-x``, that folder first on the
import path), and the file is put back before the next mutant. The tests are first run once
unmutated, so a survivor always means a missed bug, not a broken test.

Exit status: 0 when every mutant is caught; 1 when one survives, errs or the unmutated
tests fail; 2 when the list is broken (a field missing, an id repeated, an 'old' snippet
that does not occur exactly once in its file).

    python tools/mutate.py [--jobs N] [--only ID ...] [--check]
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LIST = Path(__file__).with_name("mutations.yaml")
COPIED = ("ccma", "tests", "pyproject.toml")   # all the named tests need
FIELDS = {"id", "what", "file", "old", "new", "tests"}
MUTANT_TIMEOUT = 300  # seconds; a mutant that hangs its tests this long counts as caught
# Plugins are not auto-loaded (hydra's, zarr's and anyio's cost a second per run); the
# timeout plugin is, as pyproject's addopts pass --timeout.
PYTEST = ["-m", "pytest", "-x", "-q", "-rfE", "-p", "no:cacheprovider", "-p", "pytest_timeout"]


@dataclass(frozen=True)
class Mutation:
    id: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    k: str | None = None        # optional pytest -k expression


@dataclass(frozen=True)
class Outcome:
    mutation: Mutation
    result: str        # caught: <exception> | caught: timed out | SURVIVED | ERROR: ...
    caught_by: str
    seconds: float
    output: str = ""   # pytest's, kept for survivors and errors

    @property
    def ok(self) -> bool:
        return self.result.startswith("caught")


def load(path: Path = LIST, root: Path = ROOT) -> tuple[list[Mutation], list[str]]:
    """The mutations of ``path`` and every problem found in the list."""
    try:
        entries = yaml.safe_load(path.read_text()) or []
    except yaml.YAMLError as exc:
        return [], [f"not valid YAML: {exc}"]
    mutations, problems, seen = [], [], set()
    for n, entry in enumerate(entries, 1):
        name = entry.get("id", f"entry {n}") if isinstance(entry, dict) else f"entry {n}"
        if not isinstance(entry, dict) or not FIELDS <= set(entry) \
                or not set(entry) <= FIELDS | {"k"}:
            problems.append(f"{name}: needs exactly the fields {sorted(FIELDS)} (and optional k)")
            continue
        if name in seen:
            problems.append(f"{name}: id used twice")
        seen.add(name)
        tests = entry["tests"]
        m = Mutation(name, entry["what"], entry["file"], entry["old"], entry["new"],
                     tuple([tests] if isinstance(tests, str) else tests), entry.get("k"))
        target = root / m.file
        count = target.read_text().count(m.old) if target.is_file() else None
        if count is None:
            problems.append(f"{name}: {m.file} does not exist")
        elif count != 1:
            problems.append(f"{name}: its 'old' snippet occurs {count} times in {m.file}, not once")
        if m.old == m.new:
            problems.append(f"{name}: 'new' equals 'old'")
        if not m.tests:
            problems.append(f"{name}: no tests named")
        mutations.append(m)
    return mutations, problems


def copy_tree(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in COPIED:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def pytest(tree: Path, tests: tuple[str, ...], k: str | None) -> tuple[int | None, str]:
    """Run the tests in ``tree``; the exit status (None on timeout) and the output."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONDONTWRITEBYTECODE": "1",
           "COLUMNS": "400"}  # wide enough for the summary to name the exception
    cmd = [sys.executable, *PYTEST, *tests, *(["-k", k] if k else [])]
    try:
        proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True,
                              timeout=MUTANT_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return None, ""
    return proc.returncode, proc.stdout + proc.stderr


def first_failure(output: str) -> tuple[str, str] | None:
    """The first failing test of pytest's summary and how it failed: 'assertion', or the
    exception that ended it."""
    found = re.search(r"^(?:FAILED|ERROR) (\S+)(?: - (\w[\w.]*))?", output, re.MULTILINE)
    if not found:
        return None
    how = found.group(2) or "?"
    return found.group(1), "assertion" if how in ("assert", "AssertionError") else how


def try_mutant(m: Mutation, trees: queue.Queue) -> Outcome:
    tree = trees.get()
    target = tree / m.file
    original = target.read_text()
    started = time.perf_counter()
    try:
        target.write_text(original.replace(m.old, m.new, 1))
        code, output = pytest(tree, m.tests, m.k)
    finally:
        target.write_text(original)
        trees.put(tree)
    seconds = time.perf_counter() - started
    named = " ".join(m.tests) + (f" -k {m.k!r}" if m.k else "")
    if code is None:
        return Outcome(m, "caught: timed out", named, seconds)
    if code == 1:
        test, exception = first_failure(output) or (named, "?")
        return Outcome(m, f"caught: {exception}", test, seconds)
    if code == 0:
        return Outcome(m, "SURVIVED", named, seconds, output)
    return Outcome(m, f"ERROR: pytest exit {code}", named, seconds, output)


def baseline(tree: Path, mutations: list[Mutation]) -> list[str]:
    """Run every named test unmutated (one run per distinct -k); the failures' output."""
    by_k: dict[str | None, list[str]] = {}
    for m in mutations:
        by_k.setdefault(m.k, [])
        by_k[m.k] += [t for t in m.tests if t not in by_k[m.k]]
    failures = []
    for k, tests in by_k.items():
        code, output = pytest(tree, tuple(tests), k)
        if code != 0:
            failures.append(output)
    return failures


def table(outcomes: list[Outcome]) -> str:
    rows = [("mutation", "caught by", "result")]
    rows += [(o.mutation.id, o.caught_by, f"{o.result}, {o.seconds:.0f} s") for o in outcomes]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}} | {r[1]:<{widths[1]}} | {r[2]}" for r in rows]
    lines.insert(1, f"{'-' * widths[0]}-+-{'-' * widths[1]}-+-{'-' * 6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="mutants tested at once, each in its own copy (default: up to 2)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="test just these mutations")
    parser.add_argument("--check", action="store_true",
                        help="only check the list (fields, ids, snippets occurring once)")
    args = parser.parse_args(argv)
    mutations, problems = load()
    if args.only:
        unknown = set(args.only) - {m.id for m in mutations}
        problems += [f"--only: no mutation {name!r}" for name in sorted(unknown)]
        mutations = [m for m in mutations if m.id in args.only]
    if problems:
        print(f"{LIST.relative_to(ROOT)} is broken:", *problems, sep="\n  ", file=sys.stderr)
        return 2
    print(f"{len(mutations)} mutations, every 'old' snippet found exactly once")
    if args.check:
        return 0
    # a SIGTERM (CI's timeout) unwinds like Ctrl-C, so the copies are removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    jobs = max(1, min(args.jobs, len(mutations)))
    with tempfile.TemporaryDirectory(prefix="ccma-mutate-") as tmp:
        copies = [copy_tree(Path(tmp) / f"tree{i}") for i in range(jobs)]
        failures = baseline(copies[0], mutations)
        if failures:
            print("the named tests do not pass without any mutation (failing, or renamed?):",
                  *failures, sep="\n", file=sys.stderr)
            return 1
        trees: queue.Queue = queue.Queue()
        for tree in copies:
            trees.put(tree)
        outcomes = []
        with ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(try_mutant, m, trees) for m in mutations]
            try:
                for n, future in enumerate(futures, 1):
                    outcomes.append(future.result())
                    print(f"[{n}/{len(futures)}] {outcomes[-1].mutation.id}: {outcomes[-1].result}",
                          flush=True)
            finally:
                for future in futures:
                    future.cancel()
    bad = [o for o in outcomes if not o.ok]
    for o in bad:
        print(f"--- {o.mutation.id}: {o.result}", *o.output.strip().splitlines()[-15:], sep="\n")
    print(table(outcomes))
    print(f"{len(outcomes) - len(bad)} of {len(outcomes)} mutants caught"
          + (f"; not caught: {', '.join(o.mutation.id for o in bad)}" if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
