"""``ccma session init | serve | next | import | export``: the command line of a session."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_session_parser(sub, parser_class, formatter_class, help_: str) -> None:
    """``ccma session`` and its actions on ``sub``; ``help_``: its line in ``ccma --help``."""
    from ..backbones import BACKBONES
    from ..settings import DEFAULT_STUDENT, DEFAULT_TEACHER
    from ..strategies import REGISTRY

    p = sub.add_parser("session", help=help_, formatter_class=formatter_class)
    actions = p.add_subparsers(dest="action", required=True, parser_class=parser_class)

    def action(name: str, help_: str, func):
        a = actions.add_parser(name, help=help_, formatter_class=formatter_class)
        a.add_argument("--dir", type=Path, required=True, help="the session folder")
        a.set_defaults(func=func)
        return a

    def rounds(a) -> None:
        a.add_argument("--strategy", default="ccma", help=f"one of: {', '.join(sorted(REGISTRY))}")
        a.add_argument("--batch", type=int, default=None, help="images the strategy picks per round "
                                                               "(default: K, at most 20)")
        a.add_argument("--init", default="strategy", choices=["strategy", "random"],
                       help="the first batch: the strategy itself where it needs no student "
                            "(CCMA: the teacher alone), else random")
        a.add_argument("--calibration-per-batch", type=int, default=None,
                       help="calibration images added to each batch until all are labelled "
                            "(default: a quarter of --batch)")
        a.add_argument("--alpha", type=float, default=0.1,
                       help="conformal error rate: the sets cover the true class with probability "
                            ">= 1 - alpha")
        a.add_argument("--device", default="cpu", help="where the student trains: cpu, cuda, auto")
        a.add_argument("--threads", type=int, default=1,
                       help="CPU threads of a round's work: small matrices, where one thread is as "
                            "fast as two and is not slowed down by a busy machine")

    a = action("init", "list, embed and prepare a folder of images", cmd_init)
    a.add_argument("--images", type=Path, required=True, help="folder of images (searched recursively)")
    a.add_argument("--classes", type=Path, required=True,
                   help="one class name per line, or 'name<TAB>prompt' for a prompt of its own")
    a.add_argument("--teacher-backbone", default=DEFAULT_TEACHER, help=f"CLIP teacher: {', '.join(BACKBONES)}")
    a.add_argument("--student-backbone", default=DEFAULT_STUDENT, help="student backbone")
    a.add_argument("--calibration", type=int, default=None,
                   help="calibration images, a random sample never used for training "
                        "(default: 2K, at least 50, at most a fifth of the images)")
    a.add_argument("--seed", type=int, default=0, help="seed of the calibration draw and of every round")
    a.add_argument("--templates", type=Path, default=None,
                   help="prompt templates, one per line with '{}' for the class name")
    a.add_argument("--labels", type=Path, default=None, help="CSV (path,label) of labels known already")
    a.add_argument("--labels-from-folders", action="store_true",
                   help="an image whose folder is named like a class has that label")
    a.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    a.add_argument("--chunk-rows", type=int, default=4096, help="rows per stored chunk (the unit of resuming)")
    a.add_argument("--workers", type=int, default=None, help="DataLoader processes (default: cores - 1, at most 8)")
    a.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="stored dtype")
    a.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    a.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")

    a = action("serve", "the labelling page on a local web server", cmd_serve)
    rounds(a)
    a.add_argument("--host", default="127.0.0.1", help="address to listen on; other than loopback needs --token")
    a.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    a.add_argument("--token", default=None, help="secret every request must carry (open the printed URL)")
    a.add_argument("--hold", type=float, default=600.0,
                   help="seconds an image shown to one annotator is kept from the others")
    a.add_argument("--page-size", type=int, default=48, help="images one page holds at a time")

    a = action("next", "write the open images to a CSV (queues a round when none is open)", cmd_next)
    rounds(a)
    a.add_argument("--out", type=Path, required=True, help="CSV: path, row_id, teacher_set, student_set, label")

    a = action("import", "record answers from a CSV (columns label and row_id or path)", cmd_import)
    a.add_argument("answers", type=Path, help="CSV; label: a class name, <skip> or <none>")
    a.add_argument("--annotator", default="csv", help="who answered (answers of others are not replaced)")

    a = action("export", "labels, predictions, conformal sets and the trained head", cmd_export)
    rounds(a)
    a.add_argument("--out", type=Path, required=True, help="folder for labels.csv, head.pt, summary.json")


def _session(args):
    from ..cli import set_threads
    from ..errors import CCMAError
    from ..student import StudentConfig
    from .engine import Session

    if args.threads < 1:
        raise CCMAError(f"--threads: must be >= 1, got {args.threads}")
    set_threads(args.threads)

    return Session(args.dir, strategy=args.strategy, batch=args.batch, init=args.init,
                   calibration_per_batch=args.calibration_per_batch, alpha=args.alpha,
                   student=StudentConfig(device=args.device))


def cmd_init(args) -> None:
    from ..backbones import default_workers
    from ..prototypes import TEMPLATES, read_templates
    from .create import InitConfig, init_session

    cfg = InitConfig(args.dir, args.images, args.classes, args.teacher_backbone, args.student_backbone,
                     args.calibration, args.seed,
                     tuple(read_templates(args.templates)) if args.templates else TEMPLATES,
                     args.labels, args.labels_from_folders, args.batch_size, args.chunk_rows,
                     default_workers() if args.workers is None else args.workers, args.dtype, args.device,
                     args.progress)
    store = init_session(cfg, log=lambda msg: print(msg, file=sys.stderr))
    print(f"{args.dir}: {len(store.paths())} images, {len(store.classes())} classes, "
          f"{len(store.calibration_rows())} calibration images; next: ccma session serve --dir {args.dir}")


def cmd_serve(args) -> None:
    from .web import serve

    serve(_session(args), args.host, args.port, args.token, args.hold, args.page_size,
          log=lambda msg: print(msg, flush=True))


def cmd_next(args) -> None:
    n = _session(args).write_next(args.out)
    print(f"{args.out}: {n} images to label")


def cmd_import(args) -> None:
    from .engine import Session

    counts = Session(args.dir).import_answers(args.answers, args.annotator)
    print(f"{args.answers}: {counts['label']} labels, {counts['skip']} skipped, {counts['none']} in no class")


def cmd_export(args) -> None:
    summary = _session(args).export(args.out)
    print(f"{args.out}: {summary['images']} images, {summary['train_labels']} training and "
          f"{summary['calibration_labels']} calibration labels; conformal sets: coverage "
          f"{summary['coverage_guarantee']}")
