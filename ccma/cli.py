"""The ``ccma`` command line (docs/method.md §13). Entry points only; the work is in the library.

Every user mistake ends in one line on stderr naming the option or file, exit status 2.
"""

from __future__ import annotations

import argparse
import errno
import sys
from dataclasses import fields
from pathlib import Path

from .errors import CCMAError
from .parameters import RANGES, check, check_device


# What each command does: its --help, and the top-level --help, which lists the commands
# without importing what they need (torch, zarr, matplotlib)
SUMMARY = {
    "synth": "write the synthetic cross-modal benchmark",
    "splits": "hold out the stratified calibration split",
    "clusters": "cache CCMA's k-means subpool clustering for one seed",
    "run": "one active-learning run (dataset, strategy, seed)",
    "aggregate": "metrics, tables, figures and the report of every run",
    "download": "fetch a dataset into DATA_DIR/raw/DATASET",
    "embed": "image features of one backbone to features/DATASET/BACKBONE.zarr",
    "prototypes": "CLIP text prototypes to prototypes/DATASET/BACKBONE.zarr",
    "fetch-weights": "fill the model caches (run where there is internet; compute nodes then "
                     "run with HF_HUB_OFFLINE=1)",
    "import-features": "features computed elsewhere to features/DATASET/BACKBONE.zarr",
    "import-prototypes": "class-name embeddings computed elsewhere to prototypes/DATASET/BACKBONE.zarr",
    "session": "label your own images: CCMA chooses, you answer",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad value is one line ('ccma run: error: ...'), not usage + error."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show '(default: ...)' except where the default is None (help text says it)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _common(p: argparse.ArgumentParser, backbones: bool = True, teacher_help: str | None = None) -> None:
    """--data-dir, --dataset and the backbones; ``teacher_help`` given: the teacher has no
    fixed default (the command chooses it) and this explains how."""
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="data directory")
    p.add_argument("--dataset", required=True, help="dataset name")
    if backbones:
        from .settings import DEFAULT_STUDENT, DEFAULT_TEACHER

        p.add_argument("--teacher-backbone", default=None if teacher_help else DEFAULT_TEACHER,
                       help=teacher_help or "teacher feature store name")
        p.add_argument("--student-backbone", default=DEFAULT_STUDENT, help="student feature store name")


# ------------------------------------------------------------------ synth

def add_synth(sub) -> None:
    from .synth import REGIMES, SCALES, SynthConfig

    p = sub.add_parser("synth", help=SUMMARY["synth"],
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--regime", required=True, choices=sorted(REGIMES))
    p.add_argument("--scale", default="small", choices=sorted(SCALES))
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    for f in fields(SynthConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None,
                       help=f"{f.name} (small scale default: {f.default}; the regime and scale "
                            "set some)")
    p.set_defaults(func=cmd_synth)


def cmd_synth(args) -> None:
    from .synth import SynthConfig, config_for, write

    knobs = {f.name: getattr(args, f.name) for f in fields(SynthConfig)}
    cfg = config_for(args.regime, args.scale, **knobs)
    data = write(args.data_dir, args.dataset, cfg, args.regime, args.teacher_backbone,
                 args.student_backbone, args.dtype)
    print(f"{args.dataset}: {cfg.n_train} train / {cfg.n_test} test, K={cfg.n_classes}, "
          f"teacher zero-shot accuracy {data.zero_shot_test:.3f}")


# ------------------------------------------------------------------ splits

def add_splits(sub) -> None:
    p = sub.add_parser("splits", help=SUMMARY["splits"],
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--calibration-per-class", type=int, default=10,
                   help="labelled calibration samples held out per class")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the calibration draw (independent of the AL seed)")
    p.set_defaults(func=cmd_splits)


def cmd_splits(args) -> None:
    from .features import feature_path, read_features
    from .splits import make_splits, save_splits, split_path

    check("calibration_per_class", args.calibration_per_class)
    check("split_seed", args.split_seed)
    store = read_features(feature_path(args.data_dir, args.dataset, args.teacher_backbone))
    splits = make_splits(store.train.labels, len(store.test.labels), args.calibration_per_class,
                         args.split_seed, dataset=args.dataset)
    out = split_path(args.data_dir, args.dataset)
    save_splits(out, splits, split_seed=args.split_seed, calibration_per_class=args.calibration_per_class)
    print(f"{out}: pool {len(splits.pool)}, calibration {len(splits.calibration)}, test {len(splits.test)}")


# ------------------------------------------------------------------ clusters

def add_clusters(sub) -> None:
    from .settings import CCMAParams

    d = CCMAParams()
    p = sub.add_parser("clusters", help=SUMMARY["clusters"],
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--seed", type=int, required=True, help=_ranged("AL seed", "seed"))
    p.add_argument("--subpool-size", type=int, default=d.subpool_size, help=_ranged("M", "subpool_size"))
    p.add_argument("--per-cluster", type=int, default=d.per_cluster, help=_ranged("r", "per_cluster"))
    p.add_argument("--kmeans-iters", type=int, default=d.kmeans_iters,
                   help=_ranged("k-means iterations", "kmeans_iters"))
    p.set_defaults(func=cmd_clusters)


def cmd_clusters(args) -> None:
    from .acquisition import cluster_pool, clusters_dir, subpool_cache_name, subpool_clusters
    from .loop import load_run_data

    for name in ("seed", "subpool_size", "per_cluster", "kmeans_iters"):
        check(name, getattr(args, name))
    pool = load_run_data(args.data_dir, args.dataset, args.teacher_backbone, args.student_backbone).pool
    k = subpool_clusters(args.subpool_size, args.per_cluster)
    out = (clusters_dir(args.data_dir, args.dataset, args.teacher_backbone) /
           subpool_cache_name(k, args.kmeans_iters, args.seed))
    cluster_pool(pool.teacher, k, args.seed, args.kmeans_iters, out, pool.pool_key)
    print(f"{out}: {k} clusters of {len(pool.teacher)} pool points")


# ------------------------------------------------------------------ run

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _ranged(text: str, name: str) -> str:
    """Help text with the option's range from ``ccma.parameters`` (where it has one)."""
    return f"{text}; {RANGES[name]}" if name in RANGES else text


STUDENT_HELP = {
    "dropout": "input dropout rate", "lr": "AdamW learning rate", "weight_decay": "AdamW weight decay",
    "batch_size": "mini-batch size", "max_epochs": "epoch cap",
    "patience": "early stopping: epochs without a training-loss improvement",
    "min_delta": "early stopping: smallest improvement that counts",
    "device": "auto (CUDA when present), cpu or cuda[:N]",
}


def add_run(sub) -> None:
    from .settings import DEFAULT_TEACHER, INITS, PRESET_TEACHERS, StudentConfig
    from .strategies import REGISTRY

    p = sub.add_parser("run", help=SUMMARY["run"],
                       formatter_class=HelpFormatter)
    by_preset = "; ".join(f"{t} with --preset {name}" for name, t in PRESET_TEACHERS.items())
    _common(p, teacher_help=f"teacher feature store name (default: {DEFAULT_TEACHER}; {by_preset})")
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(sorted(REGISTRY))}")
    p.add_argument("--seed", type=int, required=True, help=_ranged("AL seed", "seed"))
    p.add_argument("--rounds", type=int, default=20, help=_ranged("T", "rounds"))
    p.add_argument("--budget", type=int, default=None,
                   help=_ranged("b, labels per round (unset or 0: K)", "budget"))
    p.add_argument("--init", default="random", choices=INITS, help="how the first batch is chosen")
    p.add_argument("--name", default=None,
                   help="run name under runs/{dataset}/ (default: strategy[-variant][-preset])")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished record at this name and seed that was made with other "
                        "parameters (without it, such a run stops before training)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over rounds (default: when stderr is a terminal)")
    p.add_argument("--threads", type=int, default=None,
                   help=_ranged("CPU threads for torch, faiss and BLAS (default: each library's "
                                "own choice); the selections do not depend on it", "threads"))
    g = p.add_argument_group("student (docs/method.md §3)")
    for f in fields(StudentConfig):
        g.add_argument(_flag(f.name), type=type(f.default), default=f.default, dest=f"student_{f.name}",
                       help=_ranged(STUDENT_HELP[f.name], f.name))
    seen = {}
    for strategy in REGISTRY.values():
        for param in strategy.params:
            if param.name in seen:
                continue
            seen[param.name] = strategy.name
            default = "" if param.default is None else f" (default: {param.default})"
            p.add_argument(_flag(param.name), type=param.type, default=None, choices=param.choices,
                           help=_ranged(f"{param.help}{default}", param.name))
    p.set_defaults(func=cmd_run)


def default_teacher(strategy: str, preset: str | None) -> str:
    """The teacher a run reads when none is named: the preset's (the published code's
    ViT-g/14 for reference-code), else the paper's."""
    from .settings import DEFAULT_TEACHER, PRESET_TEACHERS

    return PRESET_TEACHERS.get(preset, DEFAULT_TEACHER) if strategy == "ccma" else DEFAULT_TEACHER


def set_threads(n: int) -> None:
    """Run every CPU library on ``n`` threads: torch, faiss's OpenMP and the BLAS libraries
    that numpy and faiss load (through threadpoolctl). Selections do not depend on ``n``."""
    import faiss
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    threadpool_limits(n)  # kept for the process: the returned handle is never restored


def cmd_run(args) -> None:
    from .loop import RunConfig, run
    from .settings import StudentConfig
    from .strategies import REGISTRY, get_strategy

    strategy = get_strategy(args.strategy)
    if args.threads is not None:
        check("threads", args.threads)
        set_threads(args.threads)
    own = {param.name for param in strategy.params}
    for other in REGISTRY.values():
        for param in other.params:
            if param.name not in own and getattr(args, param.name) is not None:
                raise CCMAError(f"{_flag(param.name)}: does not apply to strategy {args.strategy!r}")
    student = StudentConfig(**{f.name: getattr(args, f"student_{f.name}") for f in fields(StudentConfig)})
    cfg = RunConfig(
        data_dir=args.data_dir, dataset=args.dataset, strategy=args.strategy, seed=args.seed,
        rounds=args.rounds, budget=args.budget, init=args.init,
        teacher_backbone=args.teacher_backbone or default_teacher(args.strategy, getattr(args, "preset", None)),
        student_backbone=args.student_backbone, student=student, params={name: getattr(args, name) for name in own}, name=args.name,
    )
    out = run(cfg, progress=args.progress, log=lambda msg: print(msg, file=sys.stderr),
              overwrite=args.overwrite)
    print(out)


# ------------------------------------------------------------------ aggregate

def add_aggregate(sub) -> None:
    from .settings import (DEFAULT_ITERATIONS, DEFAULT_RELATIVE_TARGETS, DEFAULT_TARGETS,
                           SENSITIVITY_PARAMS, TIE_METHODS)

    p = sub.add_parser("aggregate", help=SUMMARY["aggregate"],
                       formatter_class=HelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="data directory (reads runs/)")
    p.add_argument("--results-dir", type=Path, default=Path("results"), help="where results go")
    p.add_argument("--targets", type=float, nargs="+", default=[100 * t for t in DEFAULT_TARGETS],
                   help="target accuracies in percent for labels-to-target")
    p.add_argument("--relative-targets", type=float, nargs="*",
                   default=[100 * t for t in DEFAULT_RELATIVE_TARGETS],
                   help="labels-to-target also for these percentages of the dataset's best final accuracy")
    p.add_argument("--rank-iterations", type=int, nargs="+", default=list(DEFAULT_ITERATIONS),
                   help="rounds shown in the cross-dataset rank table")
    p.add_argument("--ties", default="min", choices=TIE_METHODS,
                   help="rank shared by tied strategies (min: 1, 1, 3; average: 1.5, 1.5, 3)")
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="seeds every run should have (default: every seed found on the dataset)")
    p.add_argument("--sensitivity", nargs="*", default=list(SENSITIVITY_PARAMS),
                   help="CCMA parameters that get sensitivity curves when runs differ in them only")
    p.add_argument("--dpi", type=int, default=200, help="resolution of the PNG figures")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over datasets (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_aggregate)


def cmd_aggregate(args) -> None:
    from .report import ReportConfig, write_report

    cfg = ReportConfig(targets=tuple(t / 100 for t in args.targets),
                       relative_targets=tuple(t / 100 for t in args.relative_targets),
                       iterations=tuple(args.rank_iterations), ties=args.ties,
                       seeds=tuple(args.seeds) if args.seeds else None,
                       sensitivity=tuple(args.sensitivity), dpi=args.dpi)
    report = write_report(args.data_dir, args.results_dir, cfg, progress=args.progress)
    for line in report.warnings:
        print(f"ccma aggregate: warning: {line}", file=sys.stderr)
    print(report.results_dir / "report.html")


# ------------------------------------------------------------------ download / embed / prototypes

def _raw_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw-dir", type=Path, default=None,
                   help="where the dataset's files are (default: DATA_DIR/raw/DATASET)")


def _backbone_options(p: argparse.ArgumentParser, default=None, many: bool = False) -> None:
    from .backbones import BACKBONES

    p.add_argument("--backbone", required=default is None, default=default, nargs="+" if many else None,
                   help=f"feature store name: one of {', '.join(BACKBONES)}, or a name for the custom "
                        "model given by --open-clip-model/--pretrained or --hf-model")
    p.add_argument("--open-clip-model", default=None, help="custom teacher: open_clip model name (e.g. ViT-g-14)")
    p.add_argument("--pretrained", default=None,
                   help="custom teacher: open_clip pretrained tag (e.g. laion2b_s34b_b88k)")
    p.add_argument("--hf-model", default=None,
                   help="custom student: DINOv2 checkpoint on the Hugging Face hub (e.g. facebook/dinov2-base)")


def _resolve(args, name: str | None = None):
    from .backbones import resolve_backbone

    return resolve_backbone(name or args.backbone, args.open_clip_model, args.pretrained, args.hf_model)


def add_download(sub) -> None:
    p = sub.add_parser("download", help=SUMMARY["download"],
                       formatter_class=HelpFormatter)
    _common(p, backbones=False)
    _raw_dir(p)
    p.set_defaults(func=cmd_download)


def cmd_download(args) -> None:
    from .datasets import raw_dir
    from .download import download

    download(args.dataset, args.raw_dir or raw_dir(args.data_dir, args.dataset))


def add_embed(sub) -> None:
    p = sub.add_parser("embed", help=SUMMARY["embed"],
                       formatter_class=HelpFormatter)
    _common(p, backbones=False)
    _backbone_options(p)
    _raw_dir(p)
    p.add_argument("--classnames-file", type=Path, default=None,
                   help="image folders only: 'folder<TAB>name' lines, or one name per line in sorted "
                        "folder order (default: RAW_DIR/classnames.txt when present, else folder names)")
    p.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    p.add_argument("--chunk-rows", type=int, default=4096,
                   help="rows per stored chunk: the unit a killed job resumes from")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader processes decoding and preprocessing images (default: one per "
                        "CPU core the job may use, less one, at most 8)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored dtype")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bar with images per second")
    p.set_defaults(func=cmd_embed)


def cmd_embed(args) -> None:
    from .datasets import load_dataset, raw_dir
    from .embed import default_workers, embed_dataset, load_backbone
    from .geometry import pick_device

    device = pick_device(check_device(args.device))
    backbone = _resolve(args)
    data = load_dataset(args.dataset, args.raw_dir or raw_dir(args.data_dir, args.dataset), args.classnames_file)
    encoder = load_backbone(backbone, device)
    path = embed_dataset(args.data_dir, data, encoder, batch_size=args.batch_size, chunk_rows=args.chunk_rows,
                         workers=default_workers() if args.workers is None else args.workers,
                         dtype=args.dtype, progress=args.progress)
    print(f"{path}: {len(data.train.labels)} train / {len(data.test.labels)} test rows, d={encoder.dim}, "
          f"K={data.n_classes} ({backbone.describe()}, split: {data.split_rule})")


def add_prototypes(sub) -> None:
    from .settings import DEFAULT_TEACHER

    p = sub.add_parser("prototypes", help=SUMMARY["prototypes"],
                       formatter_class=HelpFormatter)
    _common(p, backbones=False)
    _backbone_options(p, default=DEFAULT_TEACHER)
    p.add_argument("--templates", type=Path, default=None,
                   help="file with one prompt template per line, '{}' marking the class name "
                        "(default: the 10 templates of docs/method.md §2)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.set_defaults(func=cmd_prototypes)


def cmd_prototypes(args) -> None:
    from .embed import load_backbone
    from .geometry import pick_device
    from .prototypes import TEMPLATES, build_prototypes, read_templates

    backbone = _resolve(args)
    if not backbone.has_text:
        raise CCMAError(f"--backbone: {backbone.name} has no text tower; prototypes need a CLIP teacher")
    templates = read_templates(args.templates) if args.templates else list(TEMPLATES)
    out, accuracy = build_prototypes(args.data_dir, args.dataset, load_backbone(backbone, pick_device(check_device(args.device))),
                                     templates)
    print(f"{out}: {len(templates)} templates, teacher zero-shot test accuracy {accuracy:.4f}")


def add_fetch_weights(sub) -> None:
    from .settings import DEFAULT_STUDENT, DEFAULT_TEACHER

    p = sub.add_parser("fetch-weights", formatter_class=HelpFormatter,
                       help=SUMMARY["fetch-weights"])
    _backbone_options(p, default=[DEFAULT_TEACHER, DEFAULT_STUDENT], many=True)
    p.set_defaults(func=cmd_fetch_weights)


def cmd_fetch_weights(args) -> None:
    from huggingface_hub import constants

    from .embed import fetch_weights

    if (args.open_clip_model or args.hf_model) and len(args.backbone) != 1:
        raise CCMAError("--backbone: name exactly one store for a custom --open-clip-model/--hf-model")
    for name in args.backbone:
        backbone = _resolve(args, name)
        try:
            where = fetch_weights(backbone)
        except CCMAError:
            if constants.HF_HUB_OFFLINE:
                raise CCMAError("HF_HUB_OFFLINE=1 is set: unset it to download weights") from None
            raise
        print(f"{backbone.name}: {where}")


# ------------------------------------------------------------------ import-features / import-prototypes

def _import_options(p: argparse.ArgumentParser, backbone_help: str) -> None:
    _common(p, backbones=False)
    p.add_argument("--backbone", required=True, help=backbone_help)
    p.add_argument("file", type=Path, help="a .npz, .parquet or .npy file (README, 'Bring your own embeddings')")
    p.add_argument("--normalize", action="store_true",
                   help="scale rows to unit L2 norm (without it, rows off unit norm are an error)")
    p.add_argument("--classnames-file", type=Path, default=None,
                   help="one class name per line in label-index order (default: the file's own)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")


def add_import_features(sub) -> None:
    p = sub.add_parser("import-features", formatter_class=HelpFormatter,
                       help=SUMMARY["import-features"])
    _import_options(p, "name of the new feature store (e.g. my-clip)")
    p.add_argument("--labels", type=Path, default=None, help="a .npy FILE only: its (N,) labels (.npy)")
    p.add_argument("--split", type=Path, default=None, help="a .npy FILE only: its (N,) 'train'/'test' (.npy)")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored dtype")
    p.set_defaults(func=cmd_import_features)


def cmd_import_features(args) -> None:
    from .importing import import_features, read_classnames

    names = read_classnames(args.classnames_file) if args.classnames_file else None
    out, counts = import_features(args.data_dir, args.dataset, args.backbone, args.file,
                                  normalize=args.normalize, dtype=args.dtype, labels=args.labels,
                                  split=args.split, classnames=names, overwrite=args.overwrite)
    print(f"{out}: {counts['train']} train / {counts['test']} test rows")


def add_import_prototypes(sub) -> None:
    p = sub.add_parser("import-prototypes", formatter_class=HelpFormatter,
                       help=SUMMARY["import-prototypes"])
    _import_options(p, "the teacher's store name; its feature store must exist")
    p.set_defaults(func=cmd_import_prototypes)


def cmd_import_prototypes(args) -> None:
    from .importing import import_prototypes, read_classnames

    names = read_classnames(args.classnames_file) if args.classnames_file else None
    out, accuracy = import_prototypes(args.data_dir, args.dataset, args.backbone, args.file,
                                      normalize=args.normalize, classnames=names, overwrite=args.overwrite)
    print(f"{out}: teacher zero-shot test accuracy {accuracy:.4f}")


# ------------------------------------------------------------------ session

def add_session(sub) -> None:
    from .session.cli import add_session_parser

    add_session_parser(sub, OneLineParser, HelpFormatter, SUMMARY["session"])


# ------------------------------------------------------------------ main

COMMANDS = {"synth": add_synth, "splits": add_splits, "clusters": add_clusters, "run": add_run,
            "aggregate": add_aggregate, "download": add_download, "embed": add_embed,
            "prototypes": add_prototypes, "fetch-weights": add_fetch_weights,
            "import-features": add_import_features, "import-prototypes": add_import_prototypes,
            "session": add_session}


def build_parser(only: str | None = None, brief: bool = False) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that subcommand (each one imports its own modules, so a
    workflow that calls ``ccma run`` hundreds of times does not pay for the report's imports);
    ``brief``: the command names and summaries alone, which is all ``ccma --help`` and a
    mistyped command need, so they answer without importing anything heavy."""
    parser = OneLineParser(prog="ccma", description="Conformal Cross-Modal Active Learning")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for name, add in COMMANDS.items():
        if brief:
            sub.add_parser(name, help=SUMMARY[name])
        elif only in (None, name):
            add(sub)
    return parser


# A read-only folder or file system: one line naming the path instead of a traceback.
WRITE_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(command, brief=command is None).parse_args(argv)
    try:
        args.func(args)
    except CCMAError as exc:
        print(f"ccma {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:  # not about a path of ours: a bug, keep its traceback
            raise
        hint = (f"; ccma {args.command} needs to write there" if exc.errno in WRITE_DENIED else "")
        print(f"ccma {args.command}: error: {exc.filename}: {exc.strerror or exc}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ccma {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
