"""A labelling session's rounds: the benchmark's strategies and student on a user's images.

Row ids are the rows of the session's feature stores (``SESSION/data/features/session/``);
``images.path`` in the database names each row's file. A round trains the student on every
human label of the training role, estimates its accuracy on the calibration labels, asks
the strategy for ``batch`` images and queues them with the next calibration images.

Calibration (conformal sets, the held-out accuracy). At ``init`` a seeded uniform sample of
all images is set aside as the calibration images; each batch ends with the next
``calibration_per_batch`` of them in a fixed random order, so the labelled ones are always a
uniform random sample of the images. Neither the strategy nor the student ever reads their
features or labels: the student trains on the other labels only, and CCMA's size-targeted
thresholds (which read no labels) are fitted on the features of a seeded sample of the pool
(``SIZE_SAMPLE``). The exported sets are split-conformal on the n calibration labels at
level ``alpha``: for a new image from the same source as the session's images (which the
strategy never saw), whose class is one of the classes,
``1 - alpha <= P(y in C(x)) <= 1 - alpha + 1/(n + 1)`` (the upper bound without tied
scores), over the draw of the calibration images and the new image. Calibration images
answered "skip" or "not any of these" are left out, which keeps the bound as long as
skipping does not depend on the class. For the session's own unlabelled images the strategy
looked at their features when choosing what to label, so the bound is not exact for them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..conformal import calibrate_coverage, calibrate_size
from ..errors import CCMAError
from ..features import check_same_rows, feature_path, prototype_path, read_features, read_prototypes
from ..geometry import pick_device
from ..loop import round_seed
from ..parameters import check
from ..settings import INITS
from ..strategies import QueryContext, get_strategy
from ..strategies.base import PoolData
from ..strategies.ccma import pool_clustering
from ..student import Student, StudentConfig, StudentNet, train_student
from ..teacher import teacher_log_posterior
from .store import QueueItem, Store

DATASET = "session"                 # the dataset name of the session's stores
SIZE_SAMPLE = 2000                  # pool images whose features fit CCMA's size targets
DEFAULT_TAU = 0.01                  # the teacher temperature of CCMA's paper preset
# Round diagnostics kept for the page's chart and the record (the others read true labels
# of unlabelled images, which a session does not have)
DIAGNOSTICS = ("overlap", "overlap_count", "sym_diff", "top1_disagreement", "js_mean",
               "set_size_teacher", "set_size_student")
SKIP, NONE = "<skip>", "<none>"     # answers.csv: an image skipped / in none of the classes


def data_dir(session_dir) -> Path:
    """Where the session's feature, prototype and cluster stores live."""
    return Path(session_dir) / "data"


@dataclass
class SessionData:
    """The session's features, read once per process."""

    teacher: np.ndarray        # (N, d_T) float32, rows L2-normalised
    student: np.ndarray        # (N, d_S) float32
    prototypes: np.ndarray     # (K, d_T)
    classnames: list[str]
    calibration: np.ndarray    # (N_cal,) row ids in the order they are asked for
    pool: np.ndarray           # (N_pool,) sorted row ids the strategy may choose from
    size_sample: np.ndarray    # (<= SIZE_SAMPLE,) pool row ids for CCMA's size targets

    @property
    def n_classes(self) -> int:
        return len(self.classnames)


def load_data(store: Store) -> SessionData:
    meta = store.meta()
    if not meta.get("complete"):
        raise CCMAError(f"{store.path.parent}: 'ccma session init' did not finish; run it again")
    root = data_dir(store.path.parent)
    teacher = read_features(feature_path(root, DATASET, meta["teacher"]))
    student = read_features(feature_path(root, DATASET, meta["student"]))
    check_same_rows(teacher, student)
    protos = read_prototypes(prototype_path(root, DATASET, meta["teacher"]))
    if len(teacher.train.labels) != len(store.paths()):
        raise CCMAError(f"{teacher.path}: {len(teacher.train.labels)} rows but the session lists "
                        f"{len(store.paths())} images; run 'ccma session init' again")
    calibration = np.asarray(store.calibration_rows(), dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(teacher.train.labels)), calibration)
    rng = np.random.default_rng([meta["seed"], 1])
    size_sample = np.sort(rng.choice(pool, size=min(SIZE_SAMPLE, len(pool)), replace=False))
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    return SessionData(f32(teacher.train.embeddings), f32(student.train.embeddings), protos.prototypes,
                       [name for name, _ in store.classes()], calibration, pool, size_sample)


def ranked_set(log_probs: np.ndarray, threshold: float) -> list[int]:
    """The conformal set {y : -log p(y) <= threshold} of one image (log_probs (K,)), most
    probable first; never empty: the best guess when no class passes."""
    order = np.argsort(-log_probs, kind="stable")
    kept = [int(c) for c in order if -log_probs[c] <= threshold]
    return kept or [int(order[0])]


def threshold(log_probs_cal: np.ndarray, cal_labels: np.ndarray, alpha: float,
              log_probs_size: np.ndarray, size_target: float) -> tuple[float, str]:
    """The round's threshold on -log p and how it was set.

    log_probs_cal (n, K) and cal_labels (n,): the labelled calibration images; the
    coverage-targeted threshold at ``alpha`` once n >= 1/alpha - 1 makes it finite.
    Before that, the size-targeted threshold (mean set size ``size_target``) on the
    unlabelled features of ``log_probs_size`` (m, K).
    """
    if len(cal_labels):
        t = calibrate_coverage(log_probs_cal[np.arange(len(cal_labels)), cal_labels], alpha)
        if math.isfinite(t):
            return t, f"coverage {1 - alpha:.0%} on {len(cal_labels)} calibration labels"
    return calibrate_size(log_probs_size, size_target), f"mean set size {size_target:g}"


class Session:
    """One session directory: its database, features and the round logic."""

    def __init__(self, session_dir, strategy: str = "ccma", batch: int | None = None,
                 init: str = "strategy", calibration_per_batch: int | None = None,
                 alpha: float = 0.1, student: StudentConfig | None = None):
        self.dir = Path(session_dir)
        self.store = Store(self.dir)
        self.meta = self.store.meta()
        self.data = load_data(self.store)
        self._calibration_set = set(self.data.calibration.tolist())
        k = self.data.n_classes
        self.strategy = get_strategy(strategy)
        overrides = {"k_teacher": min(3.0, k), "k_student": min(5.0, k)} if strategy == "ccma" else {}
        try:
            self.params = self.strategy.effective(overrides)
        except ValueError as exc:
            raise CCMAError(f"--strategy {strategy}: {exc}") from None
        self.batch = min(k, 20) if batch is None else batch
        if self.batch < 1:
            raise CCMAError(f"--batch: must be >= 1, got {self.batch}")
        if init not in INITS:
            raise CCMAError(f"--init: must be one of {INITS}, got {init!r}")
        check("alpha", alpha)
        self.init, self.alpha = init, alpha
        self.calibration_per_batch = (math.ceil(self.batch / 4) if calibration_per_batch is None
                                      else calibration_per_batch)
        self.student_config = student or StudentConfig(device="cpu")
        self.tau = float(self.params.get("tau", DEFAULT_TAU))
        self.k_teacher = float(self.params.get("k_teacher", min(3.0, k)))
        self.k_student = float(self.params.get("k_student", min(5.0, k)))

    # ------------------------------------------------------------------ labels

    def labelled(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(train rows, train labels, calibration rows, calibration labels), sorted by row."""
        answers = sorted(self.store.answers().values(), key=lambda a: a.row_id)
        split = {role: [(a.row_id, a.label) for a in answers if a.kind == "label" and a.role == role]
                 for role in ("train", "calibration")}
        out = []
        for role in ("train", "calibration"):
            pairs = np.asarray(split[role], dtype=np.int64).reshape(-1, 2)
            out += [pairs[:, 0], pairs[:, 1]]
        return tuple(out)

    def role(self, row_id: int) -> str:
        return "calibration" if row_id in self._calibration_set else "train"

    def answer(self, row_id: int, kind: str, label: int | None, annotator: str, source: str = "web",
               require_queued: bool = False, hold_s: float | None = None):
        if not 0 <= int(row_id) < len(self.data.teacher):
            raise CCMAError(f"row id {row_id}: the session has rows 0..{len(self.data.teacher) - 1}")
        if label is not None and not 0 <= int(label) < self.data.n_classes:
            raise CCMAError(f"label {label}: the session has classes 0..{self.data.n_classes - 1}")
        return self.store.answer(int(row_id), kind, None if label is None else int(label), annotator,
                                 source, self.role(int(row_id)), require_queued, hold_s)

    # ------------------------------------------------------------------ rounds

    def fit(self, rows: np.ndarray, labels: np.ndarray, round_: int) -> Student | None:
        """The student of ``round_`` on ``rows``' labels; None below two labels (batch norm)."""
        if len(rows) < 2:
            return None
        return train_student(self.data.student[rows], labels, self.data.n_classes, self.student_config,
                             seed=round_seed(self.meta["seed"], round_, 0))

    def warm_up(self) -> None:
        """Train and discard a student on two images, so that torch's one-time set-up of
        training (seconds on a busy machine) happens while the first batch is labelled,
        not between its last label and the next batch."""
        self.fit(np.arange(2), np.zeros(2, np.int64), 0)

    def advance(self) -> bool:
        """Queue the next round when no queued image is left open; True if one was queued."""
        if self.store.open_items():
            return False
        round_ = self.store.last_round() + 1
        train_rows, train_labels, cal_rows, cal_labels = self.labelled()
        started = time.perf_counter()
        student = self.fit(train_rows, train_labels, round_)
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        picked, fallback, diagnostics = self._query(round_, student, train_rows, train_labels)
        query_seconds = time.perf_counter() - started
        answered = set(self.store.answers())
        cal_next = [int(r) for r in self.data.calibration if int(r) not in answered][:self.calibration_per_batch]
        rows = np.asarray([*picked.tolist(), *cal_next], dtype=np.int64)
        if not len(rows):
            return False  # every image answered
        teacher_sets, student_sets = self.sets(rows, student)
        items = [QueueItem(int(r), round_, i, self.role(int(r)), teacher_sets[i],
                           None if student_sets is None else student_sets[i]) for i, r in enumerate(rows)]
        heldout = (float(np.mean(student.predict(self.data.student[cal_rows]) == cal_labels))
                   if student is not None and len(cal_rows) else None)
        record = {"n_train": len(train_rows), "n_calibration": len(cal_rows), "heldout_accuracy": heldout,
                  "diagnostics": diagnostics, "fallback": fallback,
                  "train_seconds": train_seconds, "query_seconds": query_seconds}
        return self.store.add_round(round_, items, record)

    def _query(self, round_: int, student: Student | None, train_rows: np.ndarray,
               train_labels: np.ndarray) -> tuple[np.ndarray, str | None, dict]:
        """The strategy's picks (row ids) among pool images nobody has answered."""
        d = self.data
        answered = np.fromiter(self.store.answers(), dtype=np.int64)
        free = ~np.isin(d.pool, answered)
        budget = min(self.batch, int(free.sum()))
        if budget == 0:
            return np.zeros(0, np.int64), None, {}
        rng = np.random.default_rng(round_seed(self.meta["seed"], round_, 1))
        if student is None and (self.init == "random" or self.strategy.needs_student):
            return np.sort(rng.choice(d.pool[free], size=budget, replace=False)), "initial batch: random", {}
        ctx = self._context(round_, student, train_rows, train_labels, free)
        sel = self.strategy.query(ctx, budget, rng)
        diagnostics = {k: sel.diagnostics[k] for k in DIAGNOSTICS if k in sel.diagnostics}
        return d.pool[np.asarray(sel.indices, dtype=np.int64)], sel.fallback, diagnostics

    def _context(self, round_: int, student: Student | None, train_rows: np.ndarray,
                 train_labels: np.ndarray, free: np.ndarray) -> QueryContext:
        """The strategy's view: the pool (every image but the calibration ones), the
        training labels, and ``free`` (N_pool,) bool, the images it may choose."""
        d = self.data
        labels = np.zeros(len(d.pool), np.int64)  # read by strategies only at labelled positions
        labeled = np.searchsorted(d.pool, train_rows)
        labels[labeled] = train_labels
        # placeholder labels for the size sample: CCMA's size targets read no labels
        pool = PoolData(student=d.student[d.pool], teacher=d.teacher[d.pool], labels=labels, rows=d.pool,
                        cal_student=d.student[d.size_sample], cal_teacher=d.teacher[d.size_sample],
                        cal_labels=np.zeros(len(d.size_sample), np.int64), prototypes=d.prototypes,
                        n_classes=d.n_classes, pool_key=hashlib.sha256(d.pool.tobytes()).hexdigest()[:16])
        return QueryContext(data=pool, labeled=labeled, student=student, params=self.params,
                            seed=self.meta["seed"], round=round_, device=pick_device(self.student_config.device),
                            cache_dir=data_dir(self.dir) / "clusters" / DATASET / self.meta["teacher"],
                            selectable=free)  # answered images (skips too) are never asked again

    def prepare(self) -> None:
        """CCMA's k-means of the pool, computed now and cached (minutes at 50,000 images),
        so that the first batch of ``serve`` or ``next`` does not wait for it."""
        p = self.params
        if self.strategy.name == "ccma" and p["subpool"] == "kmeans" and not p["recluster"] \
                and len(self.data.pool) > p["subpool_size"]:  # smaller pools are scored whole
            empty = np.zeros(0, np.int64)
            pool_clustering(self._context(0, None, empty, empty, np.ones(len(self.data.pool), bool)))

    def sets(self, rows: np.ndarray, student: Student | None
             ) -> tuple[list[list[int]], list[list[int]] | None]:
        """The teacher's (and the student's) conformal sets of ``rows``, best first."""
        d = self.data
        _, _, cal_rows, cal_labels = self.labelled()
        lpt = lambda r: teacher_log_posterior(d.teacher[r], d.prototypes, self.tau)  # noqa: E731
        t, _ = threshold(lpt(cal_rows), cal_labels, self.alpha, lpt(d.size_sample), self.k_teacher)
        teacher_sets = [ranked_set(lp, t) for lp in lpt(rows)]
        if student is None:
            return teacher_sets, None
        lps = lambda r: student.log_proba(d.student[r])  # noqa: E731
        t, _ = threshold(lps(cal_rows), cal_labels, self.alpha, lps(d.size_sample), self.k_student)
        return teacher_sets, [ranked_set(lp, t) for lp in lps(rows)]

    # ------------------------------------------------------------------ CSV exchange

    def write_next(self, out) -> int:
        """Queue a round if none is open, then write the open images to ``out`` (CSV:
        path, row_id, teacher_set, student_set, label); returns how many."""
        self.advance()
        names = self.data.classnames
        paths = self.store.paths()
        items = self.store.open_items()
        fmt = lambda s: "" if s is None else "|".join(names[c] for c in s)  # noqa: E731
        with open(out, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "row_id", "teacher_set", "student_set", "label"])
            for item in items:
                w.writerow([paths[item.row_id], item.row_id, fmt(item.teacher_set), fmt(item.student_set), ""])
        return len(items)

    def import_answers(self, path, annotator: str = "csv") -> dict:
        """Record answers from a CSV with columns ``label`` and ``row_id`` or ``path``: a class
        name, ``<skip>``, ``<none>``; an empty label is no answer. Returns counts by kind."""
        names = {n: i for i, n in enumerate(self.data.classnames)}
        by_path = {p: i for i, p in enumerate(self.store.paths())}
        counts = {"label": 0, "skip": 0, "none": 0}
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = set(reader.fieldnames or [])
            if "label" not in cols or not cols & {"row_id", "path"}:
                raise CCMAError(f"{path}: needs a 'label' column and a 'row_id' or 'path' column")
            parsed = []
            for n, rec in enumerate(reader, 2):
                label = (rec.get("label") or "").strip()
                if not label:
                    continue
                row = _row_of(rec, by_path, path, n)
                if label in (SKIP, NONE):
                    parsed.append((row, "skip" if label == SKIP else "none", None))
                elif label in names:
                    parsed.append((row, "label", names[label]))
                else:
                    raise CCMAError(f"{path}:{n}: {label!r} is not a class of the session "
                                    f"(nor {SKIP} or {NONE})")
        answers = self.store.answers()
        for row, _, _ in parsed:  # all lines checked before the first is recorded
            if not 0 <= row < len(self.data.teacher):
                raise CCMAError(f"{path}: row id {row} is not an image of the session")
            if row in answers and answers[row].annotator != annotator:
                raise CCMAError(f"{path}: image {row} ({self.store.image_path(row)}) was already "
                                f"answered by {answers[row].annotator!r}; nothing imported")
        for row, kind, label in parsed:
            self.answer(row, kind, label, annotator, source="csv")
            counts[kind] += 1
        return counts

    # ------------------------------------------------------------------ export

    def export(self, out) -> dict:
        """labels.csv (every image), head.pt (the student trained on every training label)
        and summary.json in the folder ``out``; returns the summary."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        d = self.data
        train_rows, train_labels, cal_rows, cal_labels = self.labelled()
        round_ = self.store.last_round() + 1
        student = self.fit(train_rows, train_labels, round_)
        if student is None:
            raise CCMAError("export: the student needs at least two training labels; label a batch first")
        log_probs = student.log_proba(d.student)
        t = calibrate_coverage(log_probs[cal_rows, cal_labels], self.alpha) if len(cal_rows) else math.inf
        answers = self.store.answers()
        names, paths = d.classnames, self.store.paths()
        with open(out / "labels.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "row_id", "human_label", "role", "student_prediction",
                        "student_probability", "conformal_set"])
            for row, lp in enumerate(log_probs):
                a = answers.get(row)
                human = "" if a is None else (names[a.label] if a.kind == "label"
                                              else SKIP if a.kind == "skip" else NONE)
                best = int(np.argmax(lp))
                members = [c for c in np.argsort(-lp, kind="stable") if -lp[c] <= t]
                w.writerow([paths[row], row, human, self.role(row), names[best], f"{math.exp(lp[best]):.6f}",
                            "|".join(names[c] for c in members)])
        summary = {
            "images": len(paths), "train_labels": len(train_rows), "calibration_labels": len(cal_rows),
            "alpha": self.alpha, "threshold_neg_log_p": t if math.isfinite(t) else None,
            "coverage_guarantee": (f">= {1 - self.alpha:.3f} for new images from the same source "
                                   f"(split conformal on {len(cal_rows)} calibration labels)"
                                   if math.isfinite(t) else
                                   f"none: {len(cal_rows)} calibration labels are fewer than "
                                   f"{math.ceil(1 / self.alpha) - 1}; every set holds every class"),
            "heldout_accuracy": (float(np.mean(log_probs[cal_rows].argmax(1) == cal_labels))
                                 if len(cal_rows) else None),
            "student_backbone": self.meta["student"], "teacher_backbone": self.meta["teacher"],
            "classnames": names,
        }
        torch.save({"state_dict": student.net.state_dict(), "classnames": names,
                    "dim": int(d.student.shape[1]), "student_backbone": self.meta["student"],
                    "student_config": asdict(self.student_config), "threshold": t, "alpha": self.alpha},
                   out / "head.pt")
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary


def _row_of(rec: dict, by_path: dict, path, line: int) -> int:
    if rec.get("row_id"):
        try:
            return int(rec["row_id"])
        except ValueError:
            raise CCMAError(f"{path}:{line}: row_id {rec['row_id']!r} is not a number") from None
    if rec.get("path") in by_path:
        return by_path[rec["path"]]
    raise CCMAError(f"{path}:{line}: path {rec.get('path')!r} is not an image of the session")


def load_head(path) -> tuple[StudentNet, dict]:
    """The exported head (``head.pt``) as a module in eval mode, and its metadata.

    ``module(features)`` maps student-backbone features (N, d_S), L2-normalised as the
    session stores them, to logits (N, K) over ``meta['classnames']``.
    """
    saved = torch.load(path, map_location="cpu", weights_only=True)
    net = StudentNet(saved["dim"], len(saved["classnames"]), saved["student_config"]["dropout"],
                     torch.Generator().manual_seed(0))
    net.load_state_dict(saved["state_dict"])
    return net.eval(), {k: v for k, v in saved.items() if k != "state_dict"}


__all__ = ["Session", "SessionData", "load_head", "ranked_set", "threshold"]
