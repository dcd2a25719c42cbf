"""``ccma session init``: list a folder of images, embed it, build the text prototypes.

The images (every file under ``--images`` with a common image extension, recursively) are
decoded once; files that cannot be are reported once and left out. Their paths, relative to
the images folder, are the session's rows in sorted order, written to the database before
any embedding starts. Both backbones then embed them through ``ccma.embed.embed_dataset``
(the code of ``ccma embed``, resumable chunk by chunk: a killed ``init`` run again goes on
where it stopped) into ``SESSION/data/features/session/``; the teacher's text tower builds
one prototype per class: the templates filled with its name, or its own prompt.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..datasets.base import FileImages, LoadedDataset, Split
from ..datasets.loaders import _image_files
from ..embed import embed_dataset, load_backbone, resolve_backbone
from ..errors import CCMAError, describe
from ..features import prototype_path, read_prototypes, write_prototypes
from ..geometry import pick_device
from ..prototypes import MODEL_KEYS, TEMPLATES, class_prototypes
from .engine import DATASET, Session, data_dir
from .store import Store


@dataclass(frozen=True)
class InitConfig:
    session_dir: Path
    images: Path
    classes: Path
    teacher: str = "clip-vit-l-14"
    student: str = "dinov2-large"
    calibration: int | None = None     # calibration images; None: see ``default_calibration``
    seed: int = 0
    templates: tuple[str, ...] = TEMPLATES
    labels_csv: Path | None = None     # path,label lines to import
    labels_from_folders: bool = False  # an image's parent folder named like a class is its label
    batch_size: int = 256
    chunk_rows: int = 4096
    workers: int = 0
    dtype: str = "float16"
    device: str = "auto"
    progress: bool = True


def read_classes(path) -> list[tuple[str, str | None]]:
    """``name`` or ``name<TAB>prompt`` lines (blank lines ignored) -> [(name, prompt or None)]."""
    path = Path(path)
    if not path.is_file():
        raise CCMAError(f"--classes: {path} does not exist")
    out, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        name, _, prompt = line.partition("\t")
        name, prompt = name.strip(), prompt.strip() or None
        if not name or name in seen or name.startswith("<"):
            raise CCMAError(f"{path}:{n}: class name {name!r} is empty, repeated or starts with '<'")
        seen.add(name)
        out.append((name, prompt))
    if len(out) < 2:
        raise CCMAError(f"{path}: at least two classes are needed, found {len(out)}")
    return out


def list_images(root, log=print) -> list[str]:
    """Readable image files under ``root`` (relative paths, sorted); each unreadable one is
    reported through ``log`` and left out."""
    root = Path(root)
    if not root.is_dir():
        raise CCMAError(f"--images: {root} is not a folder")
    good = []
    for rel in _image_files(root):
        try:
            with Image.open(root / rel) as im:
                im.load()
            good.append(rel)
        except Exception as exc:  # PIL raises many types for damaged or foreign files
            log(f"{root / rel}: unreadable, skipped ({describe(exc)})")
    if not good:
        raise CCMAError(f"--images: no readable images under {root}")
    return good


def default_calibration(n_images: int, n_classes: int) -> int:
    """Calibration images when not given: 2K, at least 50, at most a fifth of the images."""
    return max(1, min(max(50, 2 * n_classes), n_images // 5))


def calibration_draw(rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The calibration images: the first ``n`` of a seeded uniform permutation of ``rows``,
    in the order they are asked for (so every prefix is a uniform sample too)."""
    return np.random.default_rng([seed, 0]).permutation(rows)[:n]


def session_prototypes(encode_text, classes: list[tuple[str, str | None]], templates) -> np.ndarray:
    """(K, d_T): classes without a prompt from ``templates`` filled with their name, classes
    with one from that prompt alone."""
    protos = [None] * len(classes)
    plain = [i for i, (_, p) in enumerate(classes) if p is None]
    own = [i for i, (_, p) in enumerate(classes) if p is not None]
    if plain:
        for i, row in zip(plain, class_prototypes(encode_text, [classes[i][0] for i in plain], templates)):
            protos[i] = row
    if own:  # the template '{}' makes the prompt its own single template
        for i, row in zip(own, class_prototypes(encode_text, [classes[i][1].replace("{", "(").replace("}", ")")
                                                             for i in own], ["{}"])):
            protos[i] = row
    return np.stack(protos)


def init_session(cfg: InitConfig, log=print) -> Store:
    """Create (or finish) the session at ``cfg.session_dir``; returns its store."""
    classes = read_classes(cfg.classes)
    if not resolve_backbone(cfg.teacher).has_text:
        raise CCMAError(f"--teacher-backbone: {cfg.teacher} has no text tower; the teacher must be a CLIP model")
    resolve_backbone(cfg.student)
    store = Store(cfg.session_dir, create=True)
    meta = store.meta()
    root = str(Path(cfg.images).resolve())
    names = [n for n, _ in classes]
    if meta:
        same = (meta["images_root"], meta["teacher"], meta["student"], [list(c) for c in store.classes()])
        if same != (root, cfg.teacher, cfg.student, [list(c) for c in classes]):
            raise CCMAError(f"--dir: {cfg.session_dir} is a session of other images, backbones or "
                            "classes; choose another --dir")
        paths = store.paths()
    else:
        paths = list_images(cfg.images, log)
        given = imported_labels(cfg, paths, names)
        # drawn among the images without a label: a uniform sample of the ones asked for
        free = np.setdiff1d(np.arange(len(paths)), np.fromiter(given, np.int64, len(given)))
        n_cal = cfg.calibration if cfg.calibration is not None else default_calibration(len(free), len(classes))
        if not 0 <= n_cal < len(free):
            raise CCMAError(f"--calibration: must be in [0, {len(free)}) (images without a label), got {n_cal}")
        order = calibration_draw(free, n_cal, cfg.seed)
        now = time.time()
        with store.transaction() as db:
            db.executemany("INSERT INTO images VALUES (?, ?)", enumerate(paths))
            db.executemany("INSERT INTO classes VALUES (?, ?, ?)", [(i, n, p) for i, (n, p) in enumerate(classes)])
            db.executemany("INSERT INTO calibration VALUES (?, ?)", [(int(r), k) for k, r in enumerate(order)])
            db.executemany("INSERT INTO answers VALUES (?, 'label', ?, 'train', NULL, 'import', 'import', ?)",
                           [(r, c, now) for r, c in sorted(given.items())])
            db.executemany("INSERT INTO meta VALUES (?, ?)", [
                (k, json.dumps(v)) for k, v in dict(images_root=root, teacher=cfg.teacher, student=cfg.student,
                                                    seed=cfg.seed, complete=False).items()])
        if given:
            log(f"imported {len(given)} labels (training labels)")
    images = FileImages(root, paths)
    data = LoadedDataset(DATASET, Split(images, np.zeros(len(paths), np.int64)),
                         Split(FileImages(root, []), np.zeros(0, np.int64)), names,
                         "session: unlabelled; labels in session.sqlite")
    device = pick_device(cfg.device)
    out = data_dir(cfg.session_dir)
    for name in (cfg.teacher, cfg.student):
        encoder = load_backbone(resolve_backbone(name), device)
        path = embed_dataset(out, data, encoder, batch_size=cfg.batch_size, chunk_rows=cfg.chunk_rows,
                             workers=cfg.workers, dtype=cfg.dtype, progress=cfg.progress)
        log(f"{path}: {len(paths)} images, d={encoder.dim}")
        if name == cfg.teacher:
            protos_path = prototype_path(out, DATASET, name)
            if not _prototypes_current(protos_path, names):
                mine = encoder.attrs()
                write_prototypes(protos_path, session_prototypes(encoder.encode_texts, classes, cfg.templates),
                                 classnames=names, templates=list(cfg.templates), backbone=name,
                                 attrs={"dataset": DATASET, "prompts": [p for _, p in classes],
                                        **{k: mine[k] for k in MODEL_KEYS}})
        del encoder
    store.set_meta(complete=True)
    Session(cfg.session_dir).prepare()
    return store


def _prototypes_current(path: Path, names: list[str]) -> bool:
    try:
        return read_prototypes(path).classnames == names
    except CCMAError:
        return False


def imported_labels(cfg: InitConfig, paths: list[str], names: list[str]) -> dict[int, int]:
    """Labels that a folder layout (``--labels-from-folders``: an image's parent folder named
    like a class) or a CSV (``--labels``: columns path, label) already gives: row -> class."""
    index = {n: i for i, n in enumerate(names)}
    given: dict[int, int] = {}
    if cfg.labels_from_folders:
        for row, rel in enumerate(paths):
            parent = Path(rel).parent.name
            if parent in index:
                given[row] = index[parent]
    if cfg.labels_csv is not None:
        by_path = {p: i for i, p in enumerate(paths)}
        with open(cfg.labels_csv, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not {"path", "label"} <= set(reader.fieldnames or []):
                raise CCMAError(f"--labels: {cfg.labels_csv} needs the columns 'path' and 'label'")
            for n, rec in enumerate(reader, 2):
                if rec["path"] not in by_path or rec["label"] not in index:
                    raise CCMAError(f"--labels: {cfg.labels_csv}:{n}: unknown image {rec['path']!r} "
                                    f"or class {rec['label']!r}")
                given[by_path[rec["path"]]] = index[rec["label"]]
    return given
