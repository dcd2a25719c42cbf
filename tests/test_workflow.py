"""The workflow (issue 5): params.yaml and its schema, the Snakefile, dvc.yaml, the conda
environments, and selective recompute in both tools after a full run of a small
configuration (digits through the tiny random models, one synthetic dataset).

The end-to-end part copies Snakefile, workflow/, ccma/ and dvc.yaml into a temporary
project, so that its code inputs have fixed times and contents, and runs the real `ccma`
commands there.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import ccma_plan as plan  # noqa: E402

# DVC's in-process API (used to read its stage graph) warns about its own internals
pytestmark = pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")

TIMEOUT = 900  # seconds for one workflow command; a hang fails the test instead of blocking CI
RUNS_ON_DIGITS = {  # the small configuration's runs, named as ccma.loop.run_name names them
    "random", "uncertainty", "entropy", "margins", "bald", "powerbald", "badge", "alfamix",
    "coreset", "typiclust", "probcover", "uherding",
    "ccma", "ccma-reference-code", "ccma-V3", "ccma-kappa5", "ccma-tau0.1",
}
# Directories with a space in their names: every path must reach `ccma` as one argument.
SPACED = {"data_dir": "data/with space", "results_dir": "results/with space"}
CHECK = "check-params"  # dvc.yaml's first stage; every other stage reads its output
STRATEGIES = ["random", "uncertainty", "entropy", "margins", "bald", "powerbald", "badge", "alfamix",
              "coreset", "typiclust", "probcover", "uherding", "ccma"]  # al.strategies' names
AGGREGATE = {"results/report.md", "results/report.html", "results/curves.csv",
             "results/labels_to_target.csv", "results/digits/summary.csv", "results/digits/curves.csv",
             *(f"results/metrics/digits/{name}.json" for name in RUNS_ON_DIGITS | {"teacher"})}


def paper() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def small_config() -> dict:
    """Every key of the paper's params.yaml, scaled down; the digits runs exercise every kind
    of run (baselines, ccma, a preset, a variant, a kappa and a tau sensitivity run)."""
    c = paper()
    c["datasets"] = {"download": [], "local": ["digits"]}
    c["synthetic"] = {"syn": {"regime": "mismatch", "scale": "small", "n-classes": 5, "n-train": 300,
                              "n-test": 100, "teacher-dim": 16, "student-dim": 24}}
    # tiny-clip is the only random tiny CLIP, so the reference-code runs read the teacher's store
    c["backbones"] = {"teacher": "tiny-clip", "student": "tiny-dinov2", "reference-code-teacher": "tiny-clip"}
    c["embed"]["device"] = c["prototypes"]["device"] = "cpu"
    c["al"].update(datasets=["digits"], seeds=[1], rounds=2)
    c["student"].update({"max-epochs": 30, "device": "cpu"})
    c["ccma"]["subpool-size"] = 200
    c["ablation"] = {"datasets": ["digits"], "variants": ["V3"]}
    c["sensitivity"] = {"datasets": ["digits"], "kappa": [5], "tau": [0.1]}
    c["report"].update({"rank-iterations": [1, 2], "dpi": 50})
    return c


def make_project(dst: Path, config: dict) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("Snakefile", "dvc.yaml"):
        shutil.copy2(ROOT / name, dst / name)
    for name in ("workflow", "ccma"):
        shutil.copytree(ROOT / name, dst / name, ignore=skip)
    write_config(dst, config)
    return dst


def write_config(project: Path, config: dict) -> None:
    (project / "params.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run(args, cwd, check=True, env=None) -> subprocess.CompletedProcess:
    """Run a command; the rules' shell commands find `ccma` next to this Python."""
    env = dict(os.environ if env is None else env)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    proc = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def snakemake(project, *args, **kw):
    return run([BIN / "snakemake", "--cores", "2", *args], project, **kw)


def dvc(project, *args, **kw):
    return run([BIN / "dvc", *args], project, **kw)


def jobs(project) -> dict[str, dict]:
    """Snakemake's plan, run nothing: output file -> its row of --detailed-summary (rule,
    input-file(s), shellcmd, plan, ...), for every job of the default target."""
    table = snakemake(project, "--detailed-summary").stdout.splitlines()
    header = table[0].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in table[1:] if line.strip()]
    assert rows, "empty summary"
    return {r["output_file"]: r for r in rows}


def dry_run(project) -> dict[str, dict]:
    """``snakemake -n -p`` on a project with nothing built: output file -> its job's rule,
    input files and shell command, for every job it would run."""
    out = snakemake(project, "-n", "-p").stdout
    found = {}
    for block in out.split("\n\n"):
        lines = block.splitlines()
        head = next((i for i, line in enumerate(lines) if re.match(r"^(local)?rule \w+:$", line)), None)
        if head is None:
            continue
        fields = dict(line.strip().split(": ", 1) for line in lines[head + 1:] if ": " in line)
        if "output" not in fields:  # the target rule `all`
            continue
        job = {"rule": lines[head].split()[-1].rstrip(":"), "inputs": fields.get("input", "").split(", "),
               "shellcmd": fields["Shell command"]}
        found.update(dict.fromkeys(fields["output"].split(", "), job))
    assert found, out[-2000:]
    return found


def planned(project) -> dict[str, str]:
    """Snakemake's plan after a full run: output file -> rule, for outputs it would update."""
    return {out: r["rule"] for out, r in jobs(project).items() if r["plan"] != "no update"}


def run_outputs(names) -> set[str]:
    return {f"data/runs/digits/{name}/seed1.parquet" for name in names}


def edit(config: dict, dotted: str, value) -> dict:
    c = copy.deepcopy(config)
    *path, last = dotted.split(".")
    node = c
    for key in path:
        node = node[key]
    node[last] = value
    return c


# ---------------------------------------------------------------- params.yaml and its schema

def _walk(schema: dict, defs: dict, where: str):
    """Yield (key path, property schema, required list of its parent) for every property."""
    if "$ref" in schema:
        schema = {**defs[schema["$ref"].split("/")[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    for key, sub in schema.get("properties", {}).items():
        yield f"{where}{key}", sub, schema.get("required", [])
        yield from _walk(sub, defs, f"{where}{key}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _walk(extra, defs, f"{where}*.")


def test_schema_requires_and_describes_every_key():
    schema = yaml.safe_load(plan.SCHEMA.read_text())
    defs = schema["$defs"]
    optional = set()
    for key, sub, required in _walk(schema, defs, ""):
        resolved = defs[sub["$ref"].split("/")[-1]] if "$ref" in sub else {}
        assert sub.get("description") or resolved.get("description"), f"{key}: no description"
        if key.split(".")[-1] not in required:
            optional.add(key)
    # The only optional keys: synthetic knobs that override a regime's default, the
    # ProbCover radius whose absence means 'estimate it' (a null cannot reach the CLI), and
    # the options of the baselines, which only those in al.strategies need.
    assert optional == {f"synthetic.*.{k}" for k in (
        "seed", "n-classes", "n-train", "n-test", "teacher-dim", "student-dim", "modes", "mode-spread",
        "group-size", "group-strength", "teacher-accuracy", "confusion-mismatch", "student-noise",
        "prototype-noise", "prototype-offset", "dtype")} | {"baselines.probcover.probcover-delta"} | {
        f"baselines.{name}" for name in STRATEGIES if name != "ccma"}


def _mappings(node, where=""):
    """(dotted key path, mapping) for ``node`` and every mapping inside it."""
    if isinstance(node, dict):
        yield where, node
        for key, sub in node.items():
            yield from _mappings(sub, f"{where}{key}.")


def test_unknown_keys_are_errors_at_every_level():
    """A key the schema does not name is an error wherever it is (in the synthetic section,
    where the keys are dataset names, an entry that is not a dataset's options)."""
    config = small_config()
    for where, _ in _mappings(config):
        bad = edit(config, f"{where}colour", "red")
        error = plan.check_config(bad, "params.yaml")
        assert error is not None and error.startswith(f"params.yaml: {where}colour: "), (where, error)
        if where != "synthetic.":
            assert error.endswith("unknown key (see params.schema.yaml)"), error


@pytest.mark.parametrize("config", ["params.yaml", "config/demo.yaml"])
def test_shipped_configurations_are_valid(config):
    assert plan.check_config(yaml.safe_load((ROOT / config).read_text()), config) is None


def test_paper_experiment():
    from ccma.acquisition import PRESET_TEACHERS

    c = paper()
    assert c["datasets"]["download"] == ["cifar100", "food101", "domainnet_real", "caltech101", "caltech256"]
    assert c["al"]["seeds"] == [1, 10, 100, 1000, 10000] and c["al"]["rounds"] == 20
    assert c["al"]["budget"] == 0  # b = K
    assert (c["ccma"]["kappa"], c["ccma"]["k-teacher"], c["ccma"]["k-student"], c["ccma"]["tau"]) == (20, 3, 5, 0.01)
    assert (c["backbones"]["teacher"], c["backbones"]["student"]) == ("clip-vit-l-14", "dinov2-large")
    # the authors' teacher, as `ccma run --preset reference-code` picks it
    assert c["backbones"]["reference-code-teacher"] == PRESET_TEACHERS["reference-code"] == "clip-vit-g-14"
    names = {r.name for r in plan.al_runs(c) if r.dataset == "cifar100"}
    assert len([r for r in plan.al_runs(c) if r.dataset == "food101"]) == 14  # 12 baselines, ccma, preset
    assert {"ccma", "ccma-reference-code", "ccma-V2", "ccma-V5", "random", "uherding"} <= names


def test_paper_embed_jobs_stop_at_once_without_a_gpu(tmp_path, capsys, monkeypatch):
    """The paper's embed.device is cuda: an embed job that lands on a node without a GPU
    stops with one line (auto would embed on the node's CPU for days); prototypes, a CPU
    job, keeps auto."""
    import torch

    from ccma.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    c = paper()
    assert (c["embed"]["device"], c["prototypes"]["device"]) == ("cuda", "auto")
    assert main(["embed", "--data-dir", str(tmp_path), "--dataset", "digits", "--backbone", "tiny-clip",
                 "--device", c["embed"]["device"], "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == ("ccma embed: error: --device cuda: this machine has no CUDA GPU "
                                    "(torch.cuda.is_available() is False); use --device cpu or auto")
    assert not any(tmp_path.iterdir())


def subset_config() -> dict:
    """The small configuration running two baselines only, with the options of the others
    removed from params.yaml."""
    c = small_config()
    c["al"]["strategies"] = ["random", "bald"]
    c["baselines"] = {"bald": c["baselines"]["bald"]}
    return c


def test_strategies_are_the_registry():
    from ccma.strategies import REGISTRY

    assert set(schema_at("al.strategies.*")["enum"]) == set(REGISTRY) == set(STRATEGIES)
    for config in ("params.yaml", "config/demo.yaml"):
        assert yaml.safe_load((ROOT / config).read_text())["al"]["strategies"] == STRATEGIES


def test_a_strategy_subset_reads_only_its_options():
    c = subset_config()
    assert plan.check_config(c, "params.yaml") is None
    assert [r.name for r in plan.al_runs(c)] == ["random", "bald"]
    assert plan.reference_stores(edit(c, "backbones.reference-code-teacher", "clip-vit-g-14")) == []
    assert plan.check_config(edit(c, "baselines", {}), "params.yaml") == (
        "params.yaml: baselines.bald: missing (al.strategies lists 'bald', which takes options)")
    assert plan.check_config(edit(c, "al.strategies", ["random", "lasso"]), "params.yaml").startswith(
        "params.yaml: al.strategies.1: 'lasso' is not one of ['random', ")
    # ccma brings every CCMA run of the configuration
    with_ccma = edit(c, "al.strategies", ["ccma", "random"])
    assert [r.name for r in plan.al_runs(with_ccma)] == [
        "random", "ccma", "ccma-reference-code", "ccma-V3", "ccma-kappa5", "ccma-tau0.1"]


def test_a_strategy_subset_in_both_tools(tmp_path):
    """Snakemake plans the runs of the listed strategies only. The dvc.yaml written for the
    full list is refused by check-params, in one line, before any other stage runs; rewritten,
    it has the stages and commands of Snakemake's plan and never looks up the options of an
    unlisted baseline (before, removing one failed: Could not find 'baselines.bald')."""
    c = subset_config()
    project = make_project(tmp_path / "p", {**c, "baselines": small_config()["baselines"]})
    dvc(project, "init", "--no-scm", "-q")
    proc = dvc(project, "repro", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert [line for line in output.splitlines() if line.startswith("dvc.yaml")] == [
        "dvc.yaml: not written for params.yaml (al.strategies or the code changed); run python "
        "workflow/scripts/write_dvc_yaml.py, then dvc repro"]
    assert re.findall(r"Running stage '([^']+)'", output) == [CHECK]
    write_config(project, c)
    run([sys.executable, "workflow/scripts/write_dvc_yaml.py"], project)
    planned_jobs = dry_run(project)
    runs = {out for out, job in planned_jobs.items() if job["rule"] == "al"}
    assert runs == run_outputs({"random", "bald"})
    assert not any(job["rule"] == "clusters" for job in planned_jobs.values())
    _assert_dvc_mirrors(project, planned_jobs, same_inputs=True)
    run([sys.executable, "workflow/scripts/check_params.py", "params.yaml", tmp_path / "stamp",
         "--dvc-yaml", "dvc.yaml"], project)


def test_reference_code_runs_read_their_teacher():
    c = edit(small_config(), "backbones.reference-code-teacher", "clip-vit-g-14")
    c["al"]["datasets"] = ["digits", "syn"]
    teachers = {(r.dataset, r.name): r.teacher for r in plan.al_runs(c)}
    assert teachers["digits", "ccma-reference-code"] == "clip-vit-g-14"
    assert teachers["syn", "ccma-reference-code"] == "tiny-clip"  # its one generated teacher
    assert {t for (_, name), t in teachers.items() if name != "ccma-reference-code"} == {"tiny-clip"}
    assert plan.reference_stores(c) == [("digits", "clip-vit-g-14")]
    # nothing more to embed without the preset, or with the teacher's own store
    assert plan.reference_stores(edit(c, "ccma.presets", [])) == []
    assert plan.reference_stores(edit(c, "backbones.reference-code-teacher", "tiny-clip")) == []


def test_strategy_options_match_the_registry():
    """params.yaml names every option of every baseline, as the CLI spells it."""
    from ccma.strategies import REGISTRY

    schema = yaml.safe_load(plan.SCHEMA.read_text())["properties"]["baselines"]
    assert set(schema["properties"]) == set(REGISTRY) - {"ccma"}
    for name, spec in schema["properties"].items():
        options = {p.name.replace("_", "-") for p in REGISTRY[name].params}
        assert set(spec.get("properties", {})) == options, name
        required = {p.name.replace("_", "-") for p in REGISTRY[name].params if p.default is not None}
        assert set(spec.get("required", [])) == required, name
        assert set(paper()["baselines"][name]) == required, name


def test_ccma_options_and_presets_match_the_code():
    from dataclasses import fields

    from ccma.acquisition import PRESETS, VARIANTS, CCMAParams

    assert {k: set(v) for k, v in PRESETS.items() if v} == plan.PRESET_KEYS
    set_elsewhere = set().union(*PRESETS.values(), *VARIANTS.values()) | {"per_cluster"}
    exposed = {f.name for f in fields(CCMAParams)} - set_elsewhere
    assert {k.replace("-", "_") for k in plan.CCMA_OPTIONS} == exposed
    # no preset sets an option every CCMA run is given (it would override the preset)
    assert not set_elsewhere & {k.replace("-", "_") for k in plan.CCMA_OPTIONS}


def schema_locations() -> dict[str, list[str]]:
    """Option (python name) with a range or a device -> where params.yaml holds it (``*``:
    every item of a list)."""
    from dataclasses import fields

    from ccma.parameters import RANGES
    from ccma.strategies import REGISTRY
    from ccma.student import StudentConfig

    where = {"seed": ["al.seeds.*"], "rounds": ["al.rounds"], "budget": ["al.budget"],
             "calibration_per_class": ["splits.calibration-per-class"],
             "split_seed": ["splits.split-seed"], "tau": ["ccma.tau", "sensitivity.tau.*"],
             "kappa": ["ccma.kappa", "sensitivity.kappa.*"]}
    where.update({f.name: [f"student.{f.name.replace('_', '-')}"] for f in fields(StudentConfig)})
    for option in plan.CCMA_OPTIONS:
        where.setdefault(option.replace("-", "_"), [f"ccma.{option}"])
    for strategy in REGISTRY.values():
        if strategy.name != "ccma":
            for p in strategy.params:
                where.setdefault(p.name, []).append(f"baselines.{strategy.name}.{p.name.replace('_', '-')}")
    return {name: keys for name, keys in where.items() if name in RANGES or name == "device"}


def schema_at(dotted: str) -> dict:
    schema = yaml.safe_load(plan.SCHEMA.read_text())
    node = schema
    for key in dotted.split("."):
        node = node["items"] if key == "*" else node["properties"][key]
        if "$ref" in node:
            node = {**schema["$defs"][node["$ref"].split("/")[-1]], **node}
    return node


BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def test_schema_ranges_are_the_codes():
    """params.schema.yaml states each option's type and range as ccma.parameters does, so
    `snakemake -n` (and DVC's first stage) and `ccma run` accept the same values."""
    from dataclasses import fields

    from ccma.acquisition import CCMAParams
    from ccma.parameters import DEVICE_PATTERN, RANGES
    from ccma.strategies import REGISTRY
    from ccma.student import StudentConfig

    types = {f.name: type(f.default) for cls in (StudentConfig, CCMAParams) for f in fields(cls)}
    types.update({p.name: p.type for s in REGISTRY.values() for p in s.params if s.name != "ccma"})
    types.update(dict.fromkeys(("seed", "rounds", "budget", "calibration_per_class", "split_seed"), int))
    where = schema_locations()
    assert set(RANGES) - set(where) == {"threads", "per_cluster"}  # not options of the workflow
    for name, dotted_keys in where.items():
        for dotted in dotted_keys:
            node = schema_at(dotted)
            if name == "device":
                assert node["pattern"] == DEVICE_PATTERN, dotted
                continue
            r = RANGES[name]
            if r.words:  # sigma: a word or a number
                words = [alt for alt in node["oneOf"] if "const" in alt]
                assert [w["const"] for w in words] == list(r.words), dotted
                node = next(alt for alt in node["oneOf"] if "const" not in alt)
            assert node["type"] == ("integer" if types[name] is int else "number"), dotted
            assert {k: node[k] for k in BOUNDS if k in node} == r.schema(), dotted


def _bad_config_values():
    from ccma.parameters import RANGES

    for name, dotted_keys in schema_locations().items():
        r = RANGES.get(name)
        bad = ["gpu"] if name == "device" else []
        if r is not None:
            bad += [r.low if r.low_open else r.low - 1] if r.low is not None else []
            bad += [r.high if r.high_open else r.high + 0.5] if r.high is not None else []
            bad += ["abc"] if r.words else []
        for dotted in dotted_keys:
            for value in bad:
                yield dotted, value


def test_every_out_of_range_value_stops_the_workflow_check():
    """The check the Snakefile (and dvc.yaml's first stage) runs names every bad value."""
    config = small_config()
    config["baselines"]["probcover"]["probcover-delta"] = 0.5  # optional: present to be walked
    assert plan.check_config(config, "params.yaml") is None
    cases = list(_bad_config_values())
    assert len(cases) > 40
    for dotted, value in cases:
        *parent, last = dotted.split(".")
        if last == "*":  # a list: its first item bad
            items = copy.deepcopy(config[parent[0]][parent[1]]) or [1]
            error = plan.check_config(edit(config, ".".join(parent), [value, *items[1:]]), "params.yaml")
            key = ".".join(parent + ["0"])
        else:
            error = plan.check_config(edit(config, dotted, value), "params.yaml")
            key = dotted
        assert error is not None and error.startswith(f"params.yaml: {key}: "), (dotted, value, error)
        assert "\n" not in error


@pytest.mark.parametrize("dotted, value, message", [
    ("student.dropout", 1.5, "params.yaml: student.dropout: 1.5 is greater than or equal to the maximum of 1"),
    # accepted by the schema before it followed ccma.parameters; the run then failed
    ("ccma.alpha", 1.0, "params.yaml: ccma.alpha: 1.0 is greater than or equal to the maximum of 1"),
    ("baselines.alfamix.alfamix-cap", 2.0,
     "params.yaml: baselines.alfamix.alfamix-cap: 2.0 is greater than the maximum of 1"),
])
def test_out_of_range_values_stop_snakemake_first(tmp_path, dotted, value, message):
    """`snakemake -n` itself stops on the first line, before planning any job."""
    project = make_project(tmp_path / "p", edit(small_config(), dotted, value))
    proc = snakemake(project, "-n", check=False)
    assert proc.returncode != 0
    assert [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()] == [message]
    assert not (project / "data").exists()


def test_sources_follow_imports():
    deps = plan.sources(ROOT, "ccma.strategies.powerbald", "ccma.loop")
    assert {"ccma/strategies/powerbald.py", "ccma/strategies/bald.py", "ccma/loop.py",
            "ccma/student.py", "ccma/strategies/base.py"} <= set(deps)
    assert "ccma/strategies/ccma.py" not in deps and "ccma/cli.py" not in deps
    assert "ccma/strategies/__init__.py" not in deps  # the registry list: adding a strategy reruns nothing


# ---------------------------------------------------------------- stops before any job runs

@pytest.mark.parametrize("dotted, value, message", [
    ("al.rounds", None, "params.yaml: al.rounds: missing (required"),
    ("baselines.bald", None, "params.yaml: baselines.bald: missing (al.strategies lists 'bald', which takes options)"),
    ("al.strategies", ["random", "random"], "params.yaml: al.strategies: ['random', 'random'] has non-unique"),
    ("ccma.kappa", "twenty", "params.yaml: ccma.kappa: 'twenty' is not of type 'number'"),
    # PyYAML reads 1e-3 as a string; the schema catches it before the CLI would
    ("student.min-delta", "1e-3", "params.yaml: student.min-delta: '1e-3' is not of type 'number'"),
    ("al.init", "first", "params.yaml: al.init: 'first' is not one of ['random', 'strategy']"),
    ("ccma.colour", "red", "params.yaml: ccma.colour: unknown key"),
    ("ablation.variants", ["V1"], "params.yaml: ablation.variants.0: 'V1' is not one of"),
    ("ablation.datasets", ["cifar10"], "params.yaml: ablation.datasets: 'cifar10' is neither in datasets"),
    ("sensitivity.datasets", ["syn"], "params.yaml: sensitivity.datasets: 'syn' is not in al.datasets"),
    ("datasets.local", ["digits", "digits"], "params.yaml: datasets.local: ['digits', 'digits'] has non-unique"),
    ("backbones.reference-code-teacher", "tiny-dinov2",
     "params.yaml: backbones.reference-code-teacher: must differ from backbones.student"),
])
def test_config_errors_name_the_key(dotted, value, message):
    config = small_config()
    if value is None:
        section, key = dotted.split(".")
        del config[section][key]
    else:
        config = edit(config, dotted, value)
    error = plan.check_config(config, "params.yaml")
    assert error is not None and error.startswith(message), error
    assert "\n" not in error


def test_bad_key_stops_the_snakefile_before_any_job(tmp_path):
    config = small_config()
    del config["ccma"]["kappa"]
    project = make_project(tmp_path / "p", config)
    proc = snakemake(project, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0
    assert lines == ["params.yaml: ccma.kappa: missing (required; see params.schema.yaml)"]
    assert not (project / "data").exists()


@pytest.mark.parametrize("dotted, value, message", [
    ("colour", "red", "params.yaml: colour: unknown key (see params.schema.yaml)"),
    ("student.colour", "red", "params.yaml: student.colour: unknown key (see params.schema.yaml)"),
    ("al.rounds", -5, "params.yaml: al.rounds: -5 is less than the minimum of 1"),
])
def test_bad_params_stop_both_tools_first(tmp_path, dotted, value, message):
    """An unknown key or a bad value stops Snakemake and `dvc repro` with the same line naming
    it (for DVC, from its first stage, check-params, and only it runs); nothing is written."""
    project = make_project(tmp_path / "p", edit(small_config(), dotted, value))
    dvc(project, "init", "--no-scm", "-q")
    proc = snakemake(project, check=False)
    assert proc.returncode != 0
    assert [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()] == [message]
    proc = dvc(project, "repro", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in output
    assert [line for line in output.splitlines() if dotted.split(".")[-1] in line] == [message]
    assert re.findall(r"Running stage '([^']+)'", output) == [CHECK]
    assert not (project / "data").exists()


def test_use_conda_without_conda_stops_first(tmp_path):
    path = os.pathsep.join(str(p) for p in ("/usr/bin", "/bin"))
    if shutil.which("conda", path=os.pathsep.join([str(BIN), path])):
        pytest.skip("conda is installed")
    project = make_project(tmp_path / "p", small_config())
    proc = snakemake(project, "--use-conda", check=False, env={**os.environ, "PATH": path})
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode != 0
    assert lines == [lines[0]] and lines[0].startswith("--use-conda: no 'conda' on PATH"), lines
    assert not (project / "data").exists()


def test_lint_is_clean():
    proc = run([BIN / "snakemake", "--lint"], ROOT, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dvc_yaml_is_up_to_date():
    proc = run([sys.executable, ROOT / "workflow" / "scripts" / "write_dvc_yaml.py", "--check"], ROOT, check=False)
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------- environments

CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "open-clip-torch": "open-clip-torch"}
TOOLING = {"python", "pip", "setuptools", "cuda-version"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(reqs) -> dict[str, str]:
    """name -> version constraint, PEP 503-normalised."""
    out = {}
    for req in reqs:
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+?)\s*(\[.*\])?\s*([<>=!~].*)?$", req.split("#")[0].strip())
        out[_norm(m.group(1))] = (m.group(3) or "").replace(" ", "")
    return out


def _env_packages(path: Path) -> dict[str, str]:
    deps = yaml.safe_load(path.read_text())["dependencies"]
    conda = {}
    for dep in deps:
        if isinstance(dep, dict):
            conda.update(_requirements(dep["pip"]))
            continue
        name, *rest = dep.split()
        name = _norm(CONDA_TO_PYPI.get(name, name))
        if name not in TOOLING:
            conda[name] = rest[0] if rest else ""
    return conda


@pytest.mark.parametrize("env, extras", [
    ("workflow/envs/al.yaml", []),
    ("workflow/envs/embed.yaml", ["embed"]),
    ("workflow/envs/report.yaml", ["report"]),
    ("environment.yml", ["embed", "report", "workflow", "test", "session"]),
])
def test_environments_name_the_packages_of_pyproject(env, extras):
    from packaging.specifiers import SpecifierSet

    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirements(project["dependencies"])
    for extra in extras:
        wanted.update(_requirements(project["optional-dependencies"][extra]))
    pins = _env_packages(ROOT / env)
    assert set(pins) == set(wanted)
    for name, pin in pins.items():  # an exact version (the tested one) within pyproject's range
        version = pin.removeprefix("==")
        assert re.fullmatch(r"[0-9]+(\.[0-9]+)*", version), (name, pin)
        assert SpecifierSet(wanted[name]).contains(version), (name, pin, wanted[name])


def test_cuda_environment_pins_a_cuda_build():
    deps = yaml.safe_load((ROOT / "workflow/envs/embed.yaml").read_text())["dependencies"]
    assert any(d.startswith("cuda-version") for d in deps)
    assert any(d.startswith("pytorch ") and d.endswith("cuda*") for d in deps)
    for env in ("al", "report"):
        deps = yaml.safe_load((ROOT / f"workflow/envs/{env}.yaml").read_text())["dependencies"]
        assert any(d.startswith("pytorch ") and d.endswith("cpu*") for d in deps)


# ---------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The small configuration run end to end by Snakemake."""
    project = make_project(tmp_path_factory.mktemp("workflow") / "project", small_config())
    snakemake(project, "--set-threads", "al=1", "clusters=1", "embed=1", "prototypes=1")
    return project


@pytest.fixture(scope="module")
def dvc_built(built, tmp_path_factory):
    """A copy of the built project with every DVC stage recorded as up to date (dvc commit:
    the stages' outputs are exactly the files Snakemake built)."""
    project = tmp_path_factory.mktemp("dvc") / "project"
    shutil.copytree(built, project, symlinks=True)
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "repro", "--single-item", CHECK, "-q")  # the one output Snakemake does not write
    dvc(project, "commit", "--force", "-q")
    assert _dvc_changed(project) == set()
    return project


@pytest.mark.workflow
def test_full_run(built):
    report = (built / "results" / "report.md").read_text()
    assert "digits" in report
    assert {p.name for p in (built / "data" / "runs" / "digits").iterdir()} == RUNS_ON_DIGITS
    rows = pq.read_table(built / "data/runs/digits/ccma-kappa5/seed1.parquet").to_pylist()
    assert [r["round"] for r in rows] == [1, 2]
    assert [r["n_labeled"] for r in rows] == [10, 20]  # budget 0 means b = K = 10
    for name in ("syn",):
        assert (built / f"data/features/{name}/tiny-clip.zarr").is_dir()
    assert planned(built) == {}


@pytest.mark.workflow
@pytest.mark.parametrize("dotted, value, runs", [
    ("ccma.kappa", 10, {"ccma", "ccma-reference-code", "ccma-V3", "ccma-tau0.1"}),
    ("al.rounds", 3, RUNS_ON_DIGITS),
    ("ccma.tau", 0.02, {"ccma", "ccma-V3", "ccma-kappa5"}),
])
def test_selective_recompute_snakemake(built, dotted, value, runs):
    """After a full run, a changed parameter plans exactly the runs that read it and the
    report: never an embedding, prototypes, splits or a clustering."""
    original = (built / "params.yaml").read_text()
    try:
        write_config(built, edit(yaml.safe_load(original), dotted, value))
        plan_ = planned(built)
    finally:
        (built / "params.yaml").write_text(original)
    assert set(plan_) == run_outputs(runs) | AGGREGATE
    assert set(plan_.values()) == {"al", "aggregate"}


@pytest.mark.workflow
def test_code_change_reruns_what_it_affects(built, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(built, project, symlinks=True)
    with open(project / "ccma" / "strategies" / "bald.py", "a") as f:
        f.write("\n# changed\n")
    # powerbald imports bald's Monte-Carlo code
    assert set(planned(project)) == run_outputs({"bald", "powerbald"}) | AGGREGATE


def _dvc_changed(project) -> set[str]:
    return set(json.loads(dvc(project, "status", "--json").stdout or "{}"))


def _dvc_planned_outs(project) -> set[str]:
    """Outputs of the stages `dvc status` reports changed and of every stage downstream
    (check-params aside: a valid params.yaml gives the same file)."""
    import networkx as nx
    from dvc.repo import Repo

    changed = _dvc_changed(project) - {CHECK}  # it rewrites the same file: nothing follows from it
    with Repo(str(project)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {stage.name: stage for stage in graph.nodes}
        hit = {by_name[name] for name in changed}
        hit |= set().union(*(nx.ancestors(graph, stage) for stage in hit)) if hit else set()
        return {os.path.relpath(str(out.fs_path), project) for stage in hit for out in stage.outs}


@pytest.mark.workflow
@pytest.mark.parametrize("dotted, value, runs", [
    ("ccma.kappa", 10, {"ccma", "ccma-reference-code", "ccma-V3", "ccma-tau0.1"}),
    ("al.rounds", 3, RUNS_ON_DIGITS),
    ("ccma.tau", 0.02, {"ccma", "ccma-V3", "ccma-kappa5"}),
])
def test_selective_recompute_dvc(dvc_built, dotted, value, runs):
    """The same after `dvc commit` recorded the full run: `dvc status` names the changed
    stages (and check-params, which reruns on any change of params.yaml); they and every
    stage downstream of them (the aggregation) are what `dvc repro` reruns."""
    original = (dvc_built / "params.yaml").read_text()
    try:
        write_config(dvc_built, edit(yaml.safe_load(original), dotted, value))
        changed = _dvc_changed(dvc_built)
        outs = _dvc_planned_outs(dvc_built)
        dry = dvc(dvc_built, "repro", "--dry").stdout
    finally:
        (dvc_built / "params.yaml").write_text(original)
    assert outs == run_outputs(runs) | {"results"}
    assert CHECK in changed
    assert len(changed) == len(runs) + 1 and all(name.startswith("al-") for name in changed - {CHECK})
    assert set(re.findall(r"Running stage '([^']+)'", dry)) == changed


@pytest.mark.workflow
def test_dvc_metrics_and_plots(dvc_built):
    """`dvc metrics show` prints a row per (dataset, run) with its headline numbers (it
    printed one row of about 300 columns), and `dvc plots show` draws every run's curve from
    curves.csv, a colour per run."""
    shown = json.loads(dvc(dvc_built, "metrics", "show", "--json").stdout)
    rows = {path: v["data"] for rev in shown.values() for path, v in rev["data"].items()}
    assert set(rows) == {f"results/metrics/digits/{name}.json" for name in RUNS_ON_DIGITS | {"teacher"}}
    summary = {r["run"]: r for r in csv_rows(dvc_built / "results/digits/summary.csv")}
    for name in RUNS_ON_DIGITS:
        row = rows[f"results/metrics/digits/{name}.json"]
        assert set(row) <= {"aulc", "final", "mean_rank", "seeds"} and {"aulc", "final", "seeds"} <= set(row)
        assert row["aulc"] == pytest.approx(float(summary[name]["aulc_mean"]), abs=1e-5)
        assert row["final"] == pytest.approx(float(summary[name]["final_mean"]), abs=1e-5)
    assert set(rows["results/metrics/digits/teacher.json"]) == {"zero_shot"}
    plots = json.loads(dvc(dvc_built, "plots", "show", "--json", "-o", dvc_built / "plots").stdout)["data"]
    [curves] = plots["results/curves.csv"]
    assert curves["content"]["spec"]["encoding"]["color"]["field"] == "run"
    points = curves["content"]["data"]["values"]
    assert {p["run"] for p in points} == RUNS_ON_DIGITS
    assert sorted(float(p["n_labeled"]) for p in points if p["run"] == "ccma") == [10.0, 20.0]


def csv_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _ccma_args(cmd: str):
    """A `ccma ...` command line (with Snakemake's thread pinning and log redirection
    stripped) parsed by the real CLI parser."""
    from ccma.cli import build_parser

    words = shlex.split(cmd.split(" > ")[0])
    words = words[words.index("ccma") + 1:]
    args = vars(build_parser().parse_args(words))
    args.pop("func")
    return args


def _assert_dvc_mirrors(project, jobs: dict[str, dict], same_inputs: bool = False) -> None:
    """Every DVC stage after check-params reads check-params' output and writes the outputs
    of a Snakemake job (``jobs``: output -> job) with the same command, in which the data
    directory is one argument, and, with ``same_inputs``, from the same files (the
    aggregation aside: DVC reads the runs directory; the variant matrix cannot leave the
    clustering out of V2, V3 and V5); together they write the same files."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    config = yaml.safe_load((project / "params.yaml").read_text())
    data, results = config["data_dir"], config["results_dir"]
    rel = lambda item: os.path.relpath(str(item.fs_path), project)  # noqa: E731
    with Repo(str(project)) as repo:
        stages = [stage for stage in repo.index.stages if stage.name != CHECK]
        checked = {rel(out) for stage in repo.index.stages if stage.name == CHECK for out in stage.outs}
    assert checked == {f"{data}/params.checked"}
    outs_seen = set()
    for stage in stages:
        outs = [rel(out) for out in stage.outs]
        outs_seen |= set(outs)
        job = jobs[f"{results}/report.md" if stage.name == "aggregate" else outs[0]]
        args = _ccma_args(stage.cmd)
        assert args == _ccma_args(job["shellcmd"]) and args["data_dir"] == Path(data), stage.name
        deps = {rel(dep) for dep in stage.deps if not isinstance(dep, ParamsDependency)}
        assert checked <= deps, stage.name
        if same_inputs and stage.name != "aggregate":
            differ = (deps - checked) ^ (set(job["inputs"]) - {""})
            if stage.name.startswith("al-ccma-variant@"):
                differ = {d for d in differ if not d.startswith(f"{data}/clusters/")}
            assert not differ, stage.name
    assert {o for o in jobs if not o.startswith(f"{results}/")} == outs_seen - {results}


@pytest.mark.workflow
def test_dvc_mirrors_the_snakefile(dvc_built):
    _assert_dvc_mirrors(dvc_built, jobs(dvc_built))


def reference_config(*al_datasets: str) -> dict:
    """The small configuration with the authors' teacher for the reference-code runs (only
    planned: nothing loads its weights) and ``al_datasets`` as the AL datasets, under
    directories with a space in their names."""
    c = {**edit(small_config(), "backbones.reference-code-teacher", "clip-vit-g-14"), **SPACED}
    c["al"]["datasets"] = list(al_datasets)
    return c


def test_paths_with_a_space_stay_one_argument(tmp_path):
    """Every planned command passes the data and results directories and its log file as one
    word each (unquoted, `ccma` rejected `space/...` and the shell wrote a file `data/with`)."""
    data, results = SPACED["data_dir"], SPACED["results_dir"]
    planned_jobs = dry_run(make_project(tmp_path / "p", reference_config("digits")))
    for out, job in planned_jobs.items():
        args = _ccma_args(job["shellcmd"])
        assert args["data_dir"] == Path(data), out
        assert args.get("results_dir", Path(results)) == Path(results), out
        words = shlex.split(job["shellcmd"])
        assert words[-3] == ">" and words[-2].startswith(f"{data}/logs/") and words[-1] == "2>&1", out
    assert f"{results}/report.md" in planned_jobs


def test_dry_run_plans_the_reference_code_teacher(tmp_path):
    """reference-code on an image dataset reads clip-vit-g-14's stores, which the plan embeds
    and gives prototypes; on a synthetic dataset it keeps the one generated teacher."""
    planned_jobs = dry_run(make_project(tmp_path / "p", reference_config("digits", "syn")))
    args = lambda out: _ccma_args(planned_jobs[out]["shellcmd"])  # noqa: E731
    data = SPACED["data_dir"]
    embed, protos = f"{data}/features/digits/clip-vit-g-14.zarr", f"{data}/prototypes/digits/clip-vit-g-14.zarr"
    assert planned_jobs[embed]["rule"] == "embed" and args(embed)["backbone"] == "clip-vit-g-14"
    assert planned_jobs[protos]["rule"] == "prototypes" and args(protos)["backbone"] == "clip-vit-g-14"
    assert planned_jobs[protos]["inputs"][0] == embed
    reference = data + "/runs/{}/ccma-reference-code/seed1.parquet"
    assert args(reference.format("digits"))["teacher_backbone"] == "clip-vit-g-14"
    assert {embed, protos} <= set(planned_jobs[reference.format("digits")]["inputs"])
    assert args(reference.format("syn"))["teacher_backbone"] == "tiny-clip"
    assert args(f"{data}/runs/digits/ccma/seed1.parquet")["teacher_backbone"] == "tiny-clip"
    # the one extra store pair: none for the synthetic dataset
    assert {o for o in planned_jobs if "clip-vit-g-14" in o} == {embed, protos}


def test_dvc_mirrors_the_snakefile_with_the_reference_code_teacher(tmp_path):
    """dvc.yaml plans what `snakemake -n` plans, reference-code teacher stores included (DVC
    cannot tell synthetic datasets apart, so only image datasets are AL datasets here)."""
    project = make_project(tmp_path / "p", reference_config("digits"))
    dvc(project, "init", "--no-scm", "-q")
    planned_jobs = dry_run(project)
    assert f"{SPACED['data_dir']}/prototypes/digits/clip-vit-g-14.zarr" in planned_jobs
    _assert_dvc_mirrors(project, planned_jobs, same_inputs=True)


@pytest.mark.workflow
def test_dvc_repro_builds_the_same_file(dvc_built, tmp_path):
    """`dvc repro` of one stage rebuilds Snakemake's run record identically (timings aside)."""
    project = tmp_path / "project"
    shutil.copytree(dvc_built, project, symlinks=True)
    record = project / "data/runs/digits/ccma/seed1.parquet"
    before = _rows(record)
    dvc(project, "repro", "--force", "--single-item", "al-ccma@digits-1")
    assert _rows(record) == before


def _rows(record: Path) -> list[dict]:
    """A run record's rows without the timings."""
    timing = {"train_seconds", "query_seconds"}
    return [{k: v for k, v in row.items() if k not in timing} for row in pq.read_table(record).to_pylist()]


def spaced_config() -> dict:
    """The small configuration under directories with a space in their names, cut down to
    one round of the baselines and ccma on the synthetic dataset: synth, splits, clusters,
    the runs and the report (embed and prototypes, which take the same --data-dir, only in
    test_paths_with_a_space_stay_one_argument's plan)."""
    c = {**small_config(), **SPACED}
    c["datasets"]["local"] = []
    c["al"].update(datasets=["syn"], rounds=1)
    c["ccma"]["presets"] = []
    c["ablation"] = {"datasets": [], "variants": []}
    c["sensitivity"] = {"datasets": [], "kappa": [], "tau": []}
    c["report"]["rank-iterations"] = [1]
    return c


@pytest.fixture(scope="module")
def spaced(tmp_path_factory) -> dict[str, Path]:
    """spaced_config() run end to end by Snakemake and, in another project, by `dvc repro`;
    both projects lie in a directory with a space too."""
    base = tmp_path_factory.mktemp("spaced") / "with space"
    projects = {tool: make_project(base / tool, spaced_config()) for tool in ("snakemake", "dvc")}
    snakemake(projects["snakemake"], "--set-threads", "al=1", "clusters=1", "embed=1", "prototypes=1")
    dvc(projects["dvc"], "init", "--no-scm", "-q")
    dvc(projects["dvc"], "repro", "-q")
    return projects


@pytest.mark.workflow
def test_both_tools_run_under_a_path_with_a_space(spaced):
    """(Before the paths were quoted, every job failed with `unrecognized arguments: space`
    and the shell wrote a file `data/with`.)"""
    data, results = SPACED["data_dir"], SPACED["results_dir"]
    names = RUNS_ON_DIGITS - {"ccma-reference-code", "ccma-V3", "ccma-kappa5", "ccma-tau0.1"}
    records = {tool: {p.relative_to(project): _rows(p) for p in (project / data / "runs").rglob("*.parquet")}
               for tool, project in spaced.items()}
    assert set(records["dvc"]) == {Path(data, "runs", "syn", name, "seed1.parquet") for name in names}
    assert records["dvc"] == records["snakemake"]
    for project in spaced.values():
        assert (project / results / "report.html").is_file()
        assert (project / data / "prototypes" / "syn" / "tiny-clip.zarr").is_dir()
        assert not (project / "data" / "with").exists()
    assert planned(spaced["snakemake"]) == {}
    assert _dvc_changed(spaced["dvc"]) == set()


@pytest.mark.workflow
def test_dvc_repro_with_a_bad_value_keeps_finished_records(spaced, tmp_path):
    """DVC deletes a stage's outputs just before running it, and only `ccma run` rejects
    rounds -5: check-params stops `dvc repro` first, with one line naming the key, and every
    finished record stays; with params.yaml restored, nothing is left to rerun."""
    project = tmp_path / "project"
    shutil.copytree(spaced["dvc"], project, symlinks=True)
    records = sorted((project / SPACED["data_dir"] / "runs").rglob("*.parquet"))
    before = {p: p.read_bytes() for p in records}
    original = (project / "params.yaml").read_text()
    write_config(project, edit(yaml.safe_load(original), "al.rounds", -5))
    proc = dvc(project, "repro", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert [line for line in output.splitlines() if "rounds" in line] == [
        "params.yaml: al.rounds: -5 is less than the minimum of 1"]
    assert re.findall(r"Running stage '([^']+)'", output) == [CHECK]
    assert {p: p.read_bytes() for p in records} == before
    (project / "params.yaml").write_text(original)
    assert _dvc_changed(project) == set()


def test_reproduction_cost_of_the_paper(tmp_path):
    """The numbers README "Reproduce the paper" quotes from benchmarks/repro_cost.py, redone
    by hand from the measured CIFAR-100 seconds (benchmarks/README.md)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import repro_cost

    cost = repro_cost.estimate(paper(), slots=50, gpus=4, bench=tmp_path / "absent.json")
    assert sum(v["runs"] for v in cost["al"].values()) == 405
    # alfamix on DomainNet-Real: pool 120,906 - 10 x 345; 19 queries of 341 s x (N / 49,000)
    # x (K / 100), 20 trainings of 11.4 / 20 s x K / 100, loading 1.8 s x N / 49,000, 0.7 s
    n, k = (120_906 - 3_450) / 49_000, 3.45
    alfamix = (19 * 341 * n * k + 11.4 * k + 1.8 * n + 0.7) / 3600
    assert cost["longest_run_h"] == pytest.approx(alfamix) and round(alfamix, 1) == 14.9
    assert cost["wall"]["al_h"] == pytest.approx(alfamix)  # 172 job-hours / 50 slots is less
    assert repro_cost.ENCODERS["clip-vit-l-14"].gflop_per_image == pytest.approx(2 * 257 * 24 * 12 * 1024 ** 2 / 1e9)
    features = sum(e["feature_gb"] for e in cost["embed"])
    assert features == pytest.approx(372_404 * (768 + 1024 + 1024) * 2 / 1e9)
