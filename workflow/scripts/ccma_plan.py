"""What the workflow runs, computed from params.yaml: one place for the Snakefile and the tests.

- ``check_config``: the JSON schema of workflow/schemas/params.schema.yaml plus the checks a
  schema cannot express, reduced to one line naming the key. The schema's numeric ranges
  are ``ccma.parameters.RANGES`` (a test holds them equal), so the workflow and ``ccma run``
  accept the same values.
- ``flags``: a mapping of ``ccma`` options rendered the way DVC renders a dict in a ``cmd``
  (``--key value``, lists as several values), so both tools run the same command.
- ``al_runs``: every active-learning run (dataset, run name, strategy, teacher, options),
  named as ``ccma.loop.run_name`` names them: baselines by strategy, ``ccma``, ``ccma-V3``,
  ``ccma-reference-code``; sensitivity runs ``ccma-kappa10``, ``ccma-tau0.1`` (``--name``).
- ``reference_stores``: the teacher stores the runs read besides ``backbones.teacher``'s (the
  reference-code teacher's), which the embed and prototypes rules build.
- ``sources``: the ccma modules a command's result depends on (static imports inside the
  package, followed transitively), so a code change reruns exactly the jobs it affects.

This module imports nothing from ``ccma``: the Snakefile must parse (and report a bad
params.yaml) in an environment where only Snakemake is installed.
"""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "params.schema.yaml"

# CCMA options a preset or a variant sets (ccma.acquisition.PRESETS / VARIANTS); the workflow
# passes them only through --preset / --variant. A test keeps this in step with the code.
PRESET_KEYS = {"reference-code": {"nonconformity", "calibrate_on", "empty_set", "tau",
                                  "final_selection", "recluster", "tau_floor", "realign_prototypes"}}
# The options of ``ccma run`` every CCMA run of the workflow gets from the ``ccma`` section
# (tau only where no preset sets it).
CCMA_OPTIONS = ("kappa", "k-teacher", "k-student", "calibration", "alpha", "subpool-size",
                "kmeans-iters", "kernel-space", "sigma", "score")

# Modules that never change a result: cli.py only parses options (every option a rule relies
# on is passed explicitly) and strategies/__init__.py only lists the strategy modules, so
# adding a strategy does not rerun every other one. Their imports are not followed either.
NOT_RESULTS = {"ccma.cli", "ccma.strategies"}
# The modules each command runs (their ccma imports are followed by ``sources``); an AL run
# adds its strategy's module.
MODULES = {
    "download": ("ccma.download",),
    "embed": ("ccma.embed", "ccma.datasets"),
    "prototypes": ("ccma.prototypes", "ccma.embed"),
    "synth": ("ccma.synth",),
    "splits": ("ccma.splits", "ccma.features"),
    "clusters": ("ccma.acquisition", "ccma.loop"),
    "run": ("ccma.loop",),
    "aggregate": ("ccma.report",),
}


# ---------------------------------------------------------------- config checks

def check_config(config: dict, source: str) -> str | None:
    """None when ``config`` is valid, else one line: '<source>: <key>: <what is wrong>'."""
    import jsonschema

    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = errors[0]
        path = [str(p) for p in err.absolute_path]
        if err.validator == "required":
            missing = [k for k in err.validator_value if k not in err.instance]
            return f"{source}: {'.'.join(path + [missing[0]])}: missing (required; see {SCHEMA.name})"
        if err.validator == "additionalProperties":
            extra = sorted(set(err.instance) - set(err.schema.get("properties", {})))
            return f"{source}: {'.'.join(path + [str(extra[0])])}: unknown key (see {SCHEMA.name})"
        return f"{source}: {'.'.join(path) or '(top level)'}: {err.message}"
    return _check_references(config, source)


def _check_references(config: dict, source: str) -> str | None:
    """What the schema cannot say: names that must refer to each other."""
    images = config["datasets"]["download"] + config["datasets"]["local"]
    synthetic = config["synthetic"]
    twice = sorted({n for n in images if images.count(n) > 1})
    if twice:
        return f"{source}: datasets.local: {twice[0]!r} is also in datasets.download"
    both = sorted(set(images) & set(synthetic))
    if both:
        return f"{source}: synthetic.{both[0]}: also listed under datasets; a dataset is one or the other"
    known = set(images) | set(synthetic)
    for key in ("al.datasets", "ablation.datasets", "sensitivity.datasets"):
        section, sub = key.split(".")
        for name in config[section][sub]:
            if name not in known:
                return f"{source}: {key}: {name!r} is neither in datasets nor in synthetic"
            if section != "al" and name not in config["al"]["datasets"]:
                return f"{source}: {key}: {name!r} is not in al.datasets"
    options = yaml.safe_load(SCHEMA.read_text())["properties"]["baselines"]["properties"]
    for name in config["al"]["strategies"]:
        if options.get(name, {}).get("required") and name not in config["baselines"]:
            return f"{source}: baselines.{name}: missing (al.strategies lists {name!r}, which takes options)"
    teacher, student = config["backbones"]["teacher"], config["backbones"]["student"]
    if teacher == student:
        return f"{source}: backbones.student: must differ from backbones.teacher ({teacher!r})"
    if config["backbones"]["reference-code-teacher"] == student:
        return f"{source}: backbones.reference-code-teacher: must differ from backbones.student ({student!r})"
    names = [r.name for r in al_runs(config) if r.dataset == config["al"]["datasets"][0]] if config["al"]["datasets"] else []
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        return f"{source}: sensitivity: run {dup[0]!r} is listed twice"
    return None


def conda_missing(use_conda: bool, conda_base_path) -> str | None:
    """With --use-conda and no conda, Snakemake deletes the outputs of the jobs it is about to
    rerun and only then fails; stop before that, in one line."""
    if use_conda and not conda_base_path and shutil.which("conda") is None:
        return ("--use-conda: no 'conda' on PATH; install Miniforge (or drop --use-conda and run "
                "in the environment of `pip install -e .[all]`)")
    return None


# ---------------------------------------------------------------- rendering

def value(v) -> str:
    """A scalar as DVC writes it into a command (true/false lowercase, floats as repr)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def protocol(config: dict) -> str:
    """The AL protocol options every run shares (docs/method.md §1)."""
    return flags({k: config["al"][k] for k in ("rounds", "budget", "init")})


def flags(options: dict) -> str:
    """``{'mc-passes': 20, 'targets': [80, 90]}`` -> ``--mc-passes 20 --targets 80 90``."""
    parts = []
    for key, v in options.items():
        if isinstance(v, (list, tuple)):
            parts.append(" ".join([f"--{key}", *map(value, v)]))
        else:
            parts.append(f"--{key} {value(v)}")
    return " ".join(parts)


# ---------------------------------------------------------------- runs

@dataclass(frozen=True)
class Run:
    dataset: str
    name: str                  # the run directory under runs/{dataset}/
    strategy: str
    teacher: str               # the teacher feature store (and prototypes) it reads
    options: dict = field(default_factory=dict, hash=False)  # ccma run options (no dataset/seed)
    kmeans_subpool: bool = False  # reads the cached k-means clustering of the pool

    @property
    def module(self) -> str:
        return f"ccma.strategies.{self.strategy}"


def _ccma_options(config: dict, *, preset: str = "paper", **override) -> dict:
    c = config["ccma"]
    opts = {} if "tau" in PRESET_KEYS.get(preset, ()) else {"tau": c["tau"]}
    opts.update({k: c[k] for k in CCMA_OPTIONS})
    opts.update(override)
    return opts


def preset_teacher(config: dict, dataset: str, preset: str) -> str:
    """The teacher store a ``preset`` run on ``dataset`` reads. reference-code uses the authors'
    teacher (backbones.reference-code-teacher) on image datasets; a synthetic dataset has a
    single generated teacher (ccma synth), so every run on it keeps backbones.teacher."""
    if preset == "reference-code" and dataset not in config["synthetic"]:
        return config["backbones"]["reference-code-teacher"]
    return config["backbones"]["teacher"]


def al_runs(config: dict) -> list[Run]:
    """Every AL run of the configuration, seeds aside, in a stable order: the strategies of
    al.strategies; the CCMA runs (presets, variants, sensitivity) only when it lists ccma."""
    teacher = config["backbones"]["teacher"]
    runs = []
    strategies = config["al"]["strategies"]
    for ds in config["al"]["datasets"]:
        runs += [Run(ds, name, name, teacher, dict(config["baselines"].get(name, {})))
                 for name in strategies if name != "ccma"]
        if "ccma" not in strategies:
            continue
        runs.append(Run(ds, "ccma", "ccma", teacher, _ccma_options(config), kmeans_subpool=True))
        for preset in config["ccma"]["presets"]:
            # the reference-code preset re-clusters every round instead of using the cache
            runs.append(Run(ds, f"ccma-{preset}", "ccma", preset_teacher(config, ds, preset),
                            {"preset": preset, **_ccma_options(config, preset=preset)}))
        if ds in config["ablation"]["datasets"]:
            for variant in config["ablation"]["variants"]:
                runs.append(Run(ds, f"ccma-{variant}", "ccma", teacher, {"variant": variant, **_ccma_options(config)},
                                kmeans_subpool=variant in ("V1", "V4")))
        if ds in config["sensitivity"]["datasets"]:
            for param in ("kappa", "tau"):
                for v in config["sensitivity"][param]:
                    name = f"ccma-{param}{value(v)}"
                    runs.append(Run(ds, name, "ccma", teacher,
                                    {**_ccma_options(config, **{param: v}), "name": name}, kmeans_subpool=True))
    return runs


def reference_stores(config: dict) -> list[tuple[str, str]]:
    """(dataset, backbone) of every teacher store the runs read other than backbones.teacher's:
    the reference-code teacher's on image datasets, when that preset runs and its teacher
    differs. The workflow embeds these and builds their prototypes."""
    teacher = config["backbones"]["teacher"]
    return sorted({(r.dataset, r.teacher) for r in al_runs(config) if r.teacher != teacher})


def cluster_file(config: dict, dataset: str, seed) -> str:
    """The k-means cache ``ccma clusters`` writes and ``ccma run`` reads (per_cluster r = 1)."""
    c = config["ccma"]
    return (f"{config['data_dir']}/clusters/{dataset}/{config['backbones']['teacher']}/"
            f"kmeans-k{c['subpool-size']}-it{c['kmeans-iters']}-seed{seed}.npz")


# ---------------------------------------------------------------- code dependencies

def _imports(path: Path, module: str, package_root: Path) -> set[str]:
    """ccma modules imported by the module in ``path`` (absolute and relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "ccma"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "ccma":
                stem = node.module
            else:
                continue
            found.add(stem)
            for alias in node.names:  # `from . import record` imports a module
                if _module_file(f"{stem}.{alias.name}", package_root) is not None:
                    found.add(f"{stem}.{alias.name}")
    return found


def _module_file(module: str, package_root: Path) -> Path | None:
    rel = Path(*module.split("."))
    for candidate in (package_root / rel.with_suffix(".py"), package_root / rel / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def sources(root, *modules: str) -> list[str]:
    """Source files (relative to ``root``, the repository) of ``modules`` and every ccma module
    they import, transitively; parent packages' ``__init__.py`` count too (Python runs them),
    except those in ``NOT_RESULTS``."""
    root = Path(root)
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        mod = todo.pop()
        if mod in seen or mod in NOT_RESULTS:
            continue
        path = _module_file(mod, root)
        if path is None:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
        todo += sorted(_imports(path, mod, root))
    return sorted(str(_module_file(m, root).relative_to(root)) for m in seen)

