"""The run record (docs/method.md §8, §13): one Parquet row per round."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path
from .errors import StoreError, describe

DIAGNOSTIC_COLUMNS = (
    "q_teacher", "q_student", "set_size_teacher", "set_size_student", "coverage_teacher",
    "coverage_student", "overlap", "overlap_count", "sym_diff", "top1_disagreement", "js_mean",
    "entropy_mean", "conf_teacher", "conf_student", "gate_mean",
)
# over the kappa * b candidates: null on the last round, which queries nothing
CANDIDATE_COLUMNS = ("js_candidates", "entropy_candidates", "teacher_wrong_candidates",
                     "student_wrong_candidates")

SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("strategy", pa.string()),        # the run name: strategy plus non-default variant/preset
    ("preset", pa.string()),
    ("variant", pa.string()),         # V1..V5 for CCMA, null otherwise
    ("params_hash", pa.string()),     # hash of every result-changing parameter
    ("seed", pa.int64()),
    ("round", pa.int64()),
    ("n_labeled", pa.int64()),
    ("accuracy", pa.float64()),
    ("train_seconds", pa.float64()),
    ("query_seconds", pa.float64()),
    ("queried", pa.list_(pa.int64())),  # train-row indices chosen after this round; [] on the last
    ("teacher_zero_shot_accuracy", pa.float64()),
    *((name, pa.float64()) for name in DIAGNOSTIC_COLUMNS + CANDIDATE_COLUMNS),
    ("fallback", pa.string()),
])

COLUMNS = tuple(SCHEMA.names)


def run_path(data_dir, dataset: str, run_name: str, seed: int) -> Path:
    return Path(data_dir) / "runs" / dataset / run_name / f"seed{seed}.parquet"


def partial_path(final: Path) -> Path:
    """Where the rounds finished so far live until the run completes."""
    return final.with_name(final.stem + ".partial.parquet")


def final_path(partial: Path) -> Path:
    """The finished record a partial record becomes (``partial_path``'s inverse)."""
    return partial.with_name(partial.name.removesuffix(".partial.parquet") + ".parquet")


def write_rows(path: Path, rows: list[dict], metadata: dict) -> None:
    """Write rows atomically; ``metadata`` (JSON-able) goes into the file's schema metadata."""
    table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in rows], schema=SCHEMA)
    table = table.replace_schema_metadata({b"ccma": json.dumps(metadata).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rows(path: Path) -> tuple[list[dict], dict]:
    """Rows (as dicts, in round order) and the metadata written with them. A truncated or
    corrupt file is a StoreError; the system's own errors (a missing file) pass through."""
    with open(path, "rb") as fh:
        try:
            table = pq.read_table(fh)
            meta = json.loads((table.schema.metadata or {}).get(b"ccma", b"{}"))
        # ArrowInvalid (truncated), JSONDecodeError (metadata), OSError (corrupt pages)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise StoreError(path, f"not a readable run record ({describe(exc)})") from None
    return table.to_pylist(), meta


def remove_stale_partial(final: Path) -> bool:
    """Remove the partial record beside the finished record ``final`` unless it is a readable
    record of other parameters (an ``--overwrite`` run under way); True when it was removed or
    there is none. A kill between the final record's rename and the partial's removal leaves
    such a stale partial; the finished record wins."""
    partial = partial_path(final)
    try:
        theirs = read_rows(partial)[1].get("params_hash")
    except FileNotFoundError:
        return True
    except StoreError:  # writes are atomic: an unreadable partial is no run's work in progress
        theirs = None
    if theirs is not None and theirs != read_rows(final)[1].get("params_hash"):
        return False
    with contextlib.suppress(OSError):  # a read-only folder keeps it; it is stale all the same
        partial.unlink(missing_ok=True)
    return True
