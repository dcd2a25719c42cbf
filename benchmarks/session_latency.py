"""A labelling session at 50,000 images: how long after the last label of a batch the next
batch is ready, and how long a page of 100 thumbnails takes from a warm cache.

The session's features are the synthetic benchmark at CIFAR-100 scale (``ccma.synth``,
regime ``mismatch``: 50,000 rows, d_T 768, d_S 1,024, K 100) written where ``ccma session
init`` puts a session's stores, with the session database beside them; 100 rows point at
real PNG files for the thumbnails, the others at names never opened. Labels come from the
synthetic store (the oracle), given one committed answer at a time as the page gives them.

Measured on ``--threads`` CPU threads (default 1, as ``ccma session serve``; the target is a
2-core machine):
  load     opening the session (reading and checking both stores)
  prepare  the one-time k-means of the pool that ``init`` ends with (cached for every round)
  first    the cold-start batch (CCMA from the teacher alone)
  warm-up  the server's throwaway student while the first batch is labelled (torch's
           one-time set-up of training)
  next     per round, from the last answer of a batch to the next batch queued (training
           the student on every label, the held-out estimate, the query, the sets):
           the 5 s target
  thumbs   100 thumbnail requests through the app, cold (made) then warm (cached): the
           1 s target
Targets are printed, never asserted. ``python benchmarks/session_latency.py [--rounds R]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ccma.cli import set_threads  # noqa: E402
from ccma.session.create import calibration_draw, default_calibration  # noqa: E402
from ccma.session.engine import DATASET, Session, data_dir  # noqa: E402
from ccma.session.store import Store  # noqa: E402
from ccma.synth import config_for, write  # noqa: E402

TEACHER, STUDENT = "clip-vit-l-14", "dinov2-large"
N_THUMBS = 100


def build(session_dir: Path, seed: int = 0) -> np.ndarray:
    """Write the session (stores + database) once; returns the oracle labels (N,)."""
    labels_file = session_dir / "oracle.npy"
    if labels_file.exists():
        return np.load(labels_file)
    cfg = config_for("mismatch", "cifar100")
    data = write(data_dir(session_dir), DATASET, cfg, "mismatch", TEACHER, STUDENT)
    n = len(data.train_labels)
    images = session_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    rng = np.random.default_rng(seed)
    for i in range(N_THUMBS):
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(images / f"{i:05d}.png")
    store = Store(session_dir, create=True)
    cal = calibration_draw(np.arange(n), default_calibration(n, cfg.n_classes), seed)
    with store.transaction() as db:
        db.executemany("INSERT INTO images VALUES (?, ?)", [(i, f"{i:05d}.png") for i in range(n)])
        db.executemany("INSERT INTO classes VALUES (?, ?, NULL)", enumerate(data.classnames))
        db.executemany("INSERT INTO calibration VALUES (?, ?)", [(int(r), k) for k, r in enumerate(cal)])
    store.set_meta(images_root=str(images), teacher=TEACHER, student=STUDENT, seed=seed, complete=True)
    np.save(labels_file, data.train_labels)
    return data.train_labels


def label_batch(session: Session, oracle: np.ndarray) -> None:
    for item in session.store.open_items():
        session.answer(item.row_id, "label", int(oracle[item.row_id]), "bench")


def thumbs(session: Session) -> tuple[float, float]:
    from fastapi.testclient import TestClient

    from ccma.session.web import create_app

    client = TestClient(create_app(session))
    out = []
    for _ in range(2):  # cold, then warm
        started = time.perf_counter()
        for row in range(N_THUMBS):
            assert client.get(f"/thumb/{row}").status_code == 200
        out.append(time.perf_counter() - started)
    return out[0], out[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench" / "session",
                   help="the benchmark session (written once, reused)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after the first")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (ccma session serve's default: 1)")
    p.add_argument("--out", type=Path, default=None, help="JSON (default: CACHE_DIR/session_latency.json)")
    args = p.parse_args(argv)
    set_threads(args.threads)
    oracle = build(args.cache_dir)
    # every run starts from an unlabelled session with the pool's k-means not cached yet
    store = Store(args.cache_dir)
    with store.transaction() as db:
        for table in ("queue", "answers", "rounds"):
            db.execute(f"DELETE FROM {table}")
    for cache in (data_dir(args.cache_dir) / "clusters").glob("**/*.npz"):
        cache.unlink()
    started = time.perf_counter()
    session = Session(args.cache_dir, batch=100)
    load = time.perf_counter() - started
    started = time.perf_counter()
    session.prepare()  # the end of `ccma session init`
    prepare = time.perf_counter() - started
    started = time.perf_counter()
    assert session.advance()
    first = time.perf_counter() - started
    started = time.perf_counter()
    session.warm_up()  # as the server does while the first batch is labelled
    warm_up = time.perf_counter() - started
    nexts = []
    for _ in range(args.rounds):
        label_batch(session, oracle)
        started = time.perf_counter()
        assert session.advance()
        nexts.append(time.perf_counter() - started)
        print(f"round {session.store.last_round()}: next batch in {nexts[-1]:.2f} s "
              f"({session.store.rounds()[-1]['n_train']} training labels)", flush=True)
    cold, warm = thumbs(session)
    result = {"images": len(oracle), "threads": args.threads, "batch": 100, "load_seconds": load,
              "prepare_seconds": prepare, "first_batch_seconds": first, "warm_up_seconds": warm_up,
              "next_batch_seconds": nexts,
              "next_batch_median": statistics.median(nexts), "next_batch_max": max(nexts),
              "thumbs_100_cold_seconds": cold, "thumbs_100_warm_seconds": warm,
              "rounds": session.store.rounds()}
    out = args.out or args.cache_dir / "session_latency.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load {load:.1f} s; k-means of the pool {prepare:.1f} s (once, in init); first batch {first:.1f} s")
    print(f"next batch: median {result['next_batch_median']:.2f} s, max {result['next_batch_max']:.2f} s "
          f"(target: < 5 s)")
    print(f"100 thumbnails: cold {cold:.2f} s, warm {warm:.2f} s (target: warm < 1 s)")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
