"""The run record (SPEC sections 8 and 13): one Parquet row per round."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .atomic import atomic_path

DIAGNOSTIC_COLUMNS = (
    "q_teacher", "q_student", "set_size_teacher", "set_size_student", "coverage_teacher",
    "coverage_student", "overlap", "sym_diff", "top1_disagreement", "js_mean",
    "conf_teacher", "conf_student", "gate_mean",
)

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
    *((name, pa.float64()) for name in DIAGNOSTIC_COLUMNS),
    ("fallback", pa.string()),
])

COLUMNS = tuple(SCHEMA.names)


def run_path(data_dir, dataset: str, run_name: str, seed: int) -> Path:
    return Path(data_dir) / "runs" / dataset / run_name / f"seed{seed}.parquet"


def partial_path(final: Path) -> Path:
    """Where the rounds finished so far live until the run completes."""
    return final.with_name(final.stem + ".partial.parquet")


def write_rows(path: Path, rows: list[dict], metadata: dict) -> None:
    """Write rows atomically; ``metadata`` (JSON-able) goes into the file's schema metadata."""
    table = pa.Table.from_pylist([{c: row.get(c) for c in COLUMNS} for row in rows], schema=SCHEMA)
    table = table.replace_schema_metadata({b"ccma": json.dumps(metadata).encode()})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_rows(path: Path) -> tuple[list[dict], dict]:
    """Rows (as dicts, in round order) and the metadata written with them."""
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"ccma", b"{}"))
    return table.to_pylist(), meta
