"""The ``ccma`` command line (SPEC section 13). Entry points only; the work is in the library.

Every user mistake ends in one line on stderr naming the option or file, exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .errors import CCMAError


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


def _common(p: argparse.ArgumentParser, backbones: bool = True) -> None:
    p.add_argument("--data-dir", type=Path, default=Path("data"), help="data directory")
    p.add_argument("--dataset", required=True, help="dataset name")
    if backbones:
        from .loop import DEFAULT_STUDENT, DEFAULT_TEACHER

        p.add_argument("--teacher-backbone", default=DEFAULT_TEACHER, help="teacher feature store name")
        p.add_argument("--student-backbone", default=DEFAULT_STUDENT, help="student feature store name")


# ------------------------------------------------------------------ synth

def add_synth(sub) -> None:
    from .synth import REGIMES, SCALES, SynthConfig

    p = sub.add_parser("synth", help="write the synthetic cross-modal benchmark",
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
    p = sub.add_parser("splits", help="hold out the stratified calibration split",
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

    if args.calibration_per_class < 1:
        raise CCMAError(f"--calibration-per-class: must be >= 1, got {args.calibration_per_class}")
    store = read_features(feature_path(args.data_dir, args.dataset, args.teacher_backbone))
    splits = make_splits(store.train.labels, len(store.test.labels), args.calibration_per_class,
                         args.split_seed)
    out = split_path(args.data_dir, args.dataset)
    save_splits(out, splits, split_seed=args.split_seed, calibration_per_class=args.calibration_per_class)
    print(f"{out}: pool {len(splits.pool)}, calibration {len(splits.calibration)}, test {len(splits.test)}")


# ------------------------------------------------------------------ clusters

def add_clusters(sub) -> None:
    from .acquisition import CCMAParams

    d = CCMAParams()
    p = sub.add_parser("clusters", help="cache CCMA's k-means subpool clustering for one seed",
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--seed", type=int, required=True, help="AL seed")
    p.add_argument("--subpool-size", type=int, default=d.subpool_size, help="M")
    p.add_argument("--per-cluster", type=int, default=d.per_cluster, help="r")
    p.add_argument("--kmeans-iters", type=int, default=d.kmeans_iters)
    p.set_defaults(func=cmd_clusters)


def cmd_clusters(args) -> None:
    from .acquisition import cluster_pool, subpool_cache_name
    from .loop import load_run_data

    if args.subpool_size < 1 or args.per_cluster < 1:
        raise CCMAError("--subpool-size and --per-cluster must be >= 1")
    pool = load_run_data(args.data_dir, args.dataset, args.teacher_backbone, args.student_backbone).pool
    k = max(1, args.subpool_size // args.per_cluster)
    out = (args.data_dir / "clusters" / args.dataset / args.teacher_backbone /
           subpool_cache_name(k, args.kmeans_iters, args.seed))
    cluster_pool(pool.teacher, k, args.seed, args.kmeans_iters, out, pool.pool_key)
    print(f"{out}: {k} clusters of {len(pool.teacher)} pool points")


# ------------------------------------------------------------------ run

def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_run(sub) -> None:
    from .loop import INITS
    from .strategies import REGISTRY
    from .student import StudentConfig

    p = sub.add_parser("run", help="one active-learning run (dataset, strategy, seed)",
                       formatter_class=HelpFormatter)
    _common(p)
    p.add_argument("--strategy", required=True, help=f"one of: {', '.join(sorted(REGISTRY))}")
    p.add_argument("--seed", type=int, required=True, help="AL seed")
    p.add_argument("--rounds", type=int, default=20, help="T")
    p.add_argument("--budget", type=int, default=None, help="b, labels per round (default: K)")
    p.add_argument("--init", default="random", choices=INITS, help="how the first batch is chosen")
    p.add_argument("--name", default=None,
                   help="run name under runs/{dataset}/ (default: strategy[-variant][-preset])")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar over rounds (default: when stderr is a terminal)")
    g = p.add_argument_group("student")
    for f in fields(StudentConfig):
        g.add_argument(_flag(f.name), type=type(f.default), default=f.default, dest=f"student_{f.name}")
    seen = {}
    for strategy in REGISTRY.values():
        for param in strategy.params:
            if param.name in seen:
                continue
            seen[param.name] = strategy.name
            default = "" if param.default is None else f" (default: {param.default})"
            p.add_argument(_flag(param.name), type=param.type, default=None, choices=param.choices,
                           help=f"{param.help}{default}")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> None:
    from .loop import RunConfig, run
    from .strategies import REGISTRY, get_strategy
    from .student import StudentConfig

    strategy = get_strategy(args.strategy)
    own = {param.name for param in strategy.params}
    for other in REGISTRY.values():
        for param in other.params:
            if param.name not in own and getattr(args, param.name) is not None:
                raise CCMAError(f"{_flag(param.name)}: does not apply to strategy {args.strategy!r}")
    student = StudentConfig(**{f.name: getattr(args, f"student_{f.name}") for f in fields(StudentConfig)})
    cfg = RunConfig(
        data_dir=args.data_dir, dataset=args.dataset, strategy=args.strategy, seed=args.seed,
        rounds=args.rounds, budget=args.budget, init=args.init,
        teacher_backbone=args.teacher_backbone, student_backbone=args.student_backbone,
        student=student, params={name: getattr(args, name) for name in own}, name=args.name,
    )
    out = run(cfg, progress=args.progress, log=lambda msg: print(msg, file=sys.stderr))
    print(out)


# ------------------------------------------------------------------ main

COMMANDS = [add_synth, add_splits, add_clusters, add_run]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="ccma", description="Conformal Cross-Modal Active Learning")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except CCMAError as exc:
        print(f"ccma {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ccma {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
