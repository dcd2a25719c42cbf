"""The session's SQLite database (``SESSION/session.sqlite``, WAL mode).

Tables::

    meta         key -> JSON value (images root, backbones, seed, calibration size, ...)
    images       row_id -> path relative to the images root (row i of the feature stores)
    classes      idx -> name, optional custom prompt (label-index order)
    calibration  row_id -> rank: the calibration images, a seeded uniform sample of all images
    queue        row_id -> round, position, role ('train' | 'calibration'), the teacher's and
                 the student's sets (JSON class indices, best first), who holds it and since when
    answers      row_id -> kind ('label' | 'skip' | 'none'), label, role, round, annotator, source
    rounds       round -> labels trained on, held-out accuracy, CCMA's diagnostics, timings

Every write is its own committed transaction: a process killed at any moment (SIGKILL)
loses nothing it has acknowledged. Writers that must check before they write (an answer
against another annotator's, a new batch against one queued meanwhile) do both inside one
``BEGIN IMMEDIATE`` transaction, so two processes on one session never both win.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CCMAError

DB_NAME = "session.sqlite"
KINDS = ("label", "skip", "none")
ROLES = ("train", "calibration")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (row_id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS classes (idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, prompt TEXT);
CREATE TABLE IF NOT EXISTS calibration (row_id INTEGER PRIMARY KEY, rank INTEGER NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS queue (
    row_id INTEGER PRIMARY KEY, round INTEGER NOT NULL, position INTEGER NOT NULL,
    role TEXT NOT NULL, teacher_set TEXT NOT NULL, student_set TEXT,
    claimed_by TEXT, claimed_at REAL);
CREATE INDEX IF NOT EXISTS queue_round ON queue (round, position);
CREATE TABLE IF NOT EXISTS answers (
    row_id INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('label', 'skip', 'none')),
    label INTEGER, role TEXT NOT NULL, round INTEGER, annotator TEXT NOT NULL,
    source TEXT NOT NULL, answered_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rounds (
    round INTEGER PRIMARY KEY, n_train INTEGER NOT NULL, n_calibration INTEGER NOT NULL,
    heldout_accuracy REAL, diagnostics TEXT NOT NULL, fallback TEXT,
    train_seconds REAL, query_seconds REAL, created_at REAL NOT NULL);
"""


class Conflict(CCMAError):
    """An answer to an image another annotator holds or has already answered."""


@dataclass(frozen=True)
class Answer:
    row_id: int
    kind: str
    label: int | None
    role: str
    round: int | None
    annotator: str
    source: str


@dataclass(frozen=True)
class QueueItem:
    row_id: int
    round: int
    position: int
    role: str
    teacher_set: list[int]
    student_set: list[int] | None


class Store:
    """One connection, shared by a process's threads under a lock (sqlite3 objects are not
    thread-safe); other processes open their own."""

    def __init__(self, session_dir, create: bool = False):
        path = Path(session_dir) / DB_NAME
        if not create and not path.exists():
            raise CCMAError(f"--dir: {session_dir} is not a session (no {DB_NAME}); "
                            "create it with 'ccma session init'")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # autocommit: every statement outside an explicit BEGIN is committed at once
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a commit survives a power cut, not only a kill
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception): checks and writes inside
        see no other writer in between."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, args=()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ meta, images, classes

    def set_meta(self, **values) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in values.items()])

    def meta(self) -> dict:
        return {k: json.loads(v) for k, v in self.query("SELECT key, value FROM meta")}

    def paths(self) -> list[str]:
        """Relative image paths in row order (row i is ``paths()[i]``)."""
        return [p for (p,) in self.query("SELECT path FROM images ORDER BY row_id")]

    def image_path(self, row_id: int) -> str | None:
        found = self.query("SELECT path FROM images WHERE row_id = ?", (int(row_id),))
        return found[0][0] if found else None

    def classes(self) -> list[tuple[str, str | None]]:
        """(name, prompt or None) in label-index order."""
        return [(n, p) for n, p in self.query("SELECT name, prompt FROM classes ORDER BY idx")]

    def calibration_rows(self) -> list[int]:
        """The calibration images in rank order (the order they are asked for)."""
        return [r for (r,) in self.query("SELECT row_id FROM calibration ORDER BY rank")]

    # ------------------------------------------------------------------ answers

    def answers(self) -> dict[int, Answer]:
        rows = self.query("SELECT row_id, kind, label, role, round, annotator, source FROM answers")
        return {r[0]: Answer(*r) for r in rows}

    def answer(self, row_id: int, kind: str, label: int | None, annotator: str, source: str,
               role: str, require_queued: bool = False, hold_s: float | None = None) -> Answer:
        """Record one answer, committed before this returns.

        The annotator who answered an image may change the answer; anyone else gets a
        Conflict naming the existing answer, as do answers to an image that another
        annotator holds (claimed less than ``hold_s`` seconds ago). ``require_queued``: the
        image must be in a queued batch (answers from the page).
        """
        if kind not in KINDS:
            raise CCMAError(f"answer kind must be one of {KINDS}, got {kind!r}")
        if (kind == "label") != (label is not None):
            raise CCMAError("a label answer needs a class; skip and none take none")
        with self.transaction() as db:
            queued = db.execute("SELECT round, claimed_by, claimed_at FROM queue WHERE row_id = ?",
                                (int(row_id),)).fetchone()
            if require_queued and queued is None:
                raise CCMAError(f"image {row_id} is not in a queued batch")
            old = db.execute("SELECT kind, label, annotator FROM answers WHERE row_id = ?",
                             (int(row_id),)).fetchone()
            if old is not None and old[2] != annotator:
                raise Conflict(f"image {row_id} was already answered by another annotator "
                               f"({_describe(db, old[0], old[1])})")
            if old is None and queued is not None and hold_s is not None and queued[1] not in (None, annotator) \
                    and time.time() - (queued[2] or 0) < hold_s:
                raise Conflict(f"image {row_id} is being labelled by another annotator")
            round_ = queued[0] if queued is not None else None
            db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (int(row_id), kind, label, role, round_, annotator, source, time.time()))
        return Answer(int(row_id), kind, label, role, round_, annotator, source)

    # ------------------------------------------------------------------ the queue

    def open_items(self) -> list[QueueItem]:
        """Queued images not answered yet, in queue order."""
        return self._items("WHERE a.row_id IS NULL")

    def round_items(self, round_: int) -> list[QueueItem]:
        return self._items("WHERE q.round = ?", (round_,))

    def _items(self, where: str, args=()) -> list[QueueItem]:
        rows = self.query("SELECT q.row_id, q.round, q.position, q.role, q.teacher_set, q.student_set "
                          "FROM queue q LEFT JOIN answers a ON a.row_id = q.row_id "
                          f"{where} ORDER BY q.round, q.position", args)
        return [QueueItem(r[0], r[1], r[2], r[3], json.loads(r[4]),
                          None if r[5] is None else json.loads(r[5])) for r in rows]

    def last_round(self) -> int:
        """The highest queued round, 0 before the first batch."""
        return self.query("SELECT COALESCE(MAX(round), 0) FROM queue")[0][0]

    def claim(self, annotator: str, limit: int, hold_s: float) -> list[int]:
        """Up to ``limit`` open images for ``annotator``: the ones it holds, then free ones
        (never claimed, or claimed more than ``hold_s`` seconds ago). Returns their row ids."""
        now = time.time()
        with self.transaction() as db:
            rows = db.execute(
                "SELECT q.row_id FROM queue q LEFT JOIN answers a ON a.row_id = q.row_id "
                "WHERE a.row_id IS NULL AND (q.claimed_by = ? OR q.claimed_by IS NULL OR q.claimed_at < ?) "
                "ORDER BY q.claimed_by = ? DESC, q.round, q.position LIMIT ?",
                (annotator, now - hold_s, annotator, int(limit))).fetchall()
            ids = [r for (r,) in rows]
            db.executemany("UPDATE queue SET claimed_by = ?, claimed_at = ? WHERE row_id = ?",
                           [(annotator, now, r) for r in ids])
        return ids

    def add_round(self, round_: int, items: list[QueueItem], record: dict) -> bool:
        """Queue ``items`` as round ``round_`` with its record, unless another process queued
        a round meanwhile or open images remain (then nothing is written; returns False)."""
        with self.transaction() as db:
            last = db.execute("SELECT COALESCE(MAX(round), 0) FROM queue").fetchone()[0]
            still_open = db.execute("SELECT COUNT(*) FROM queue q LEFT JOIN answers a "
                                    "ON a.row_id = q.row_id WHERE a.row_id IS NULL").fetchone()[0]
            if last != round_ - 1 or still_open:
                return False
            db.executemany("INSERT INTO queue VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
                           [(i.row_id, round_, i.position, i.role, json.dumps(i.teacher_set),
                             None if i.student_set is None else json.dumps(i.student_set)) for i in items])
            db.execute("INSERT INTO rounds VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (round_, record["n_train"], record["n_calibration"], record["heldout_accuracy"],
                        json.dumps(record["diagnostics"]), record["fallback"],
                        record["train_seconds"], record["query_seconds"], time.time()))
        return True

    def rounds(self) -> list[dict]:
        rows = self.query("SELECT round, n_train, n_calibration, heldout_accuracy, diagnostics, fallback, "
                          "train_seconds, query_seconds FROM rounds ORDER BY round")
        keys = ("round", "n_train", "n_calibration", "heldout_accuracy", "diagnostics", "fallback",
                "train_seconds", "query_seconds")
        return [{**dict(zip(keys, r)), "diagnostics": json.loads(r[4])} for r in rows]


def _describe(db, kind: str, label: int | None) -> str:
    if kind != "label":
        return "skipped" if kind == "skip" else "not any of the classes"
    name = db.execute("SELECT name FROM classes WHERE idx = ?", (label,)).fetchone()
    return f"as {name[0]!r}" if name else f"as class {label}"
