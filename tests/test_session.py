"""Labelling sessions (ccma session ...): a real folder of PNG files (scikit-learn's digits,
upscaled), the tiny backbones, the HTTP API, the CSV exchange, export, a killed server,
two annotators, requests that try to reach other files, and the coverage guarantee."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ccma.cli import main
from ccma.errors import CCMAError
from ccma.session import engine
from ccma.session.create import calibration_draw, read_classes
from ccma.session.engine import Session, load_head, ranked_set, threshold
from ccma.session.store import Store

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from ccma.session.web import Worker, create_app, serve  # noqa: E402

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PROMPT_9 = "a photo of the handwritten digit 9"
PER_CLASS = 8
ROOT = Path(__file__).resolve().parents[1]


def make_digit_images(folder: Path) -> tuple[dict[str, int], Path]:
    """PER_CLASS digits of each class as 32x32 PNG files (in two sub-folders, to list
    recursively), one unreadable file, and the classes file (class 9 with its own prompt).
    Returns {relative path: true class} and the classes file."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    truth = {}
    for c in range(10):
        for k, i in enumerate(np.flatnonzero(digits.target == c)[:PER_CLASS]):
            rel = f"{'a' if k % 2 else 'b'}/digit{i:04d}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] / 16 * 255).astype(np.uint8)
            Image.fromarray(pixels).resize((32, 32), Image.NEAREST).convert("RGB").save(folder / rel)
            truth[rel] = c
    (folder / "a" / "broken.jpg").write_bytes(b"not a jpeg")
    classes = folder.parent / "classes.txt"
    classes.write_text("\n".join(CLASSES[:9] + [f"nine\t{PROMPT_9}"]) + "\n")
    return truth, classes


def init_tiny_session(tmp: Path, calibration: int = 12) -> tuple[Path, dict[str, int]]:
    """A session on the digits with the tiny backbones, made through the CLI."""
    truth, classes = make_digit_images(tmp / "images")
    code = main(["session", "init", "--dir", str(tmp / "session"), "--images", str(tmp / "images"),
                 "--classes", str(classes), "--teacher-backbone", "tiny-clip",
                 "--student-backbone", "tiny-dinov2", "--calibration", str(calibration),
                 "--workers", "0", "--no-progress", "--device", "cpu"])
    assert code == 0
    return tmp / "session", truth


@pytest.fixture(scope="module")
def base_session(tmp_path_factory):
    return init_tiny_session(tmp_path_factory.mktemp("session"))


@pytest.fixture
def session_dir(base_session, tmp_path):
    """A fresh copy of the initialised session (the images stay where they are)."""
    src, truth = base_session
    shutil.copytree(src, tmp_path / "session")
    return tmp_path / "session", truth


def oracle(session: Session, truth: dict[str, int]) -> np.ndarray:
    """(N,) the true class of every row."""
    return np.asarray([truth[p] for p in session.store.paths()])


def label_open(session: Session, truth, annotator="a", client: TestClient | None = None) -> list[int]:
    """Answer every open image with its true class (through the API when ``client``)."""
    y = oracle(session, truth)
    rows = [i.row_id for i in session.store.open_items()]
    for row in rows:
        if client is None:
            session.answer(row, "label", int(y[row]), annotator)
        else:
            r = client.post("/api/answer", json={"client": annotator, "row": row, "kind": "label",
                                                  "label": int(y[row])})
            assert r.status_code == 200, r.text
    return rows


def wait_round(client: TestClient, round_: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get("/api/state").json()
        if state["round"] >= round_ and state["status"] == "idle":
            return state
        assert state["status"] != "error", state["message"]
        time.sleep(0.05)
    raise AssertionError(f"round {round_} not queued within {timeout} s")


# ------------------------------------------------------------------ init

def test_init_lists_embeds_and_keeps_paths(base_session, capsys):
    from ccma.embed import BACKBONES, l2_normalize, load_backbone
    from ccma.features import feature_path, prototype_path, read_features, read_prototypes
    from ccma.prototypes import TEMPLATES, class_prototypes

    sdir, truth = base_session
    store = Store(sdir)
    assert store.paths() == sorted(truth)            # every readable image, the broken one left out
    assert [n for n, _ in store.classes()] == CLASSES
    cal = store.calibration_rows()
    assert len(cal) == 12 and len(set(cal)) == 12
    # row i of the student store is the image at paths[i]
    feats = read_features(feature_path(sdir / "data", "session", "tiny-dinov2"))
    enc = load_backbone(BACKBONES["tiny-dinov2"], torch.device("cpu"))
    row = 17
    with Image.open(Path(store.meta()["images_root"]) / store.paths()[row]) as im:
        pixels = enc.preprocess(im.convert("RGB"))[None]
    expected = l2_normalize(enc.encode_images(pixels))[0]
    np.testing.assert_allclose(feats.train.embeddings[row].astype(np.float32), expected, atol=2e-3)
    # prototypes: the templates for plain classes, the own prompt alone for 'nine'
    protos = read_prototypes(prototype_path(sdir / "data", "session", "tiny-clip"))
    clip = load_backbone(BACKBONES["tiny-clip"], torch.device("cpu"))
    np.testing.assert_allclose(protos.prototypes[9], l2_normalize(clip.encode_texts([PROMPT_9]))[0], atol=1e-5)
    np.testing.assert_allclose(protos.prototypes[:2], class_prototypes(clip.encode_texts, CLASSES[:2], TEMPLATES),
                               atol=1e-5)


def test_init_reports_unreadable_once_and_resumes(tmp_path, capsys):
    sdir, truth = init_tiny_session(tmp_path)
    first = capsys.readouterr().err
    assert first.count("broken.jpg: unreadable, skipped") == 1
    before = Store(sdir).paths()
    assert main(["session", "init", "--dir", str(sdir), "--images", str(tmp_path / "images"),
                 "--classes", str(tmp_path / "classes.txt"), "--teacher-backbone", "tiny-clip",
                 "--student-backbone", "tiny-dinov2", "--calibration", "12", "--workers", "0",
                 "--no-progress"]) == 0
    assert "unreadable, skipped" not in capsys.readouterr().err   # listed once, reused
    assert Store(sdir).paths() == before
    # another class list for the same folder is refused in one line
    other = tmp_path / "other.txt"
    other.write_text("cat\ndog\n")
    assert main(["session", "init", "--dir", str(sdir), "--images", str(tmp_path / "images"),
                 "--classes", str(other), "--teacher-backbone", "tiny-clip",
                 "--student-backbone", "tiny-dinov2"]) == 2
    assert "other images, backbones or classes" in capsys.readouterr().err


def test_init_imports_known_labels(tmp_path):
    truth, classes = make_digit_images(tmp_path / "images")
    # two images in a folder named like their class, one more in a CSV
    (tmp_path / "images" / "three").mkdir()
    moved = sorted(p for p, c in truth.items() if c == 3)[:2]
    for rel in moved:
        (tmp_path / "images" / rel).rename(tmp_path / "images" / "three" / Path(rel).name)
    extra = sorted(p for p, c in truth.items() if c == 5)[0]
    (tmp_path / "known.csv").write_text(f"path,label\n{extra},five\n")
    assert main(["session", "init", "--dir", str(tmp_path / "s"), "--images", str(tmp_path / "images"),
                 "--classes", str(classes), "--teacher-backbone", "tiny-clip", "--student-backbone",
                 "tiny-dinov2", "--calibration", "5", "--workers", "0", "--no-progress",
                 "--labels-from-folders", "--labels", str(tmp_path / "known.csv")]) == 0
    store = Store(tmp_path / "s")
    paths = store.paths()
    got = {paths[r]: (a.label, a.role, a.source) for r, a in store.answers().items()}
    assert got == {**{f"three/{Path(m).name}": (3, "train", "import") for m in moved},
                   extra: (5, "train", "import")}
    # calibration images are drawn among the images without a label
    assert not {paths[r] for r in store.calibration_rows()} & set(got)


def test_classes_file_and_ranked_sets(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("cat\n\ndog\ta photo of my dog\n")
    assert read_classes(f) == [("cat", None), ("dog", "a photo of my dog")]
    f.write_text("cat\ncat\n")
    with pytest.raises(CCMAError, match="repeated"):
        read_classes(f)
    lp = np.log(np.array([0.2, 0.5, 0.3]))
    assert ranked_set(lp, -math.log(0.25)) == [1, 2]        # p >= 0.25, most probable first
    assert ranked_set(lp, -math.log(0.9)) == [1]            # nothing passes: the best guess


# ------------------------------------------------------------------ rounds through the HTTP API

def test_two_rounds_through_http(session_dir):
    sdir, truth = session_dir
    session = Session(sdir, batch=8)
    worker = Worker(session)
    client = TestClient(create_app(session, worker=worker))
    worker.start()
    try:
        state = wait_round(client, 1)
        first = client.get("/api/batch", params={"client": "a"}).json()
        rows1 = [it["row"] for it in first["items"]]
        cal = Store(sdir).calibration_rows()
        # b strategy picks, then the first ceil(b / 4) calibration images in their order
        assert len(rows1) == 8 + 2 and rows1[8:] == cal[:2] and not set(rows1[:8]) & set(cal)
        assert "teacher-only" in state["rounds"][0]["fallback"]   # CCMA's cold start
        assert all(len(it["teacher_set"]) >= 1 and it["student_set"] is None for it in first["items"])
        label_open(session, truth, client=client)
        state = wait_round(client, 2)
        r2 = state["rounds"][1]
        assert (r2["n_train"], r2["n_calibration"]) == (8, 2)
        assert state["batch_answered"] == 0 and state["n_answered"] == 10
        assert r2["overlap"] is not None and r2["disagreement"] is not None
        rows2 = label_open(session, truth, client=client)
        assert rows2[8:] == cal[2:4] and not set(rows1) & set(rows2)
        state = wait_round(client, 3)
        assert state["rounds"][2]["n_train"] == 16
        # held-out accuracy: the round's student on the 4 calibration labels, computed again here
        y = oracle(session, truth)
        train_rows, train_labels, cal_rows, cal_labels = session.labelled()
        student = session.fit(train_rows, train_labels, 3)
        acc = float(np.mean(student.predict(session.data.student[cal_rows]) == y[cal_rows]))
        assert state["rounds"][2]["heldout_accuracy"] == pytest.approx(acc)
    finally:
        worker.stop()


def test_student_never_trains_on_calibration_labels(session_dir, monkeypatch):
    sdir, truth = session_dir
    seen = []
    real = engine.train_student
    monkeypatch.setattr(engine, "train_student", lambda x, *a, **k: (seen.append(x), real(x, *a, **k))[1])
    session = Session(sdir, batch=8)
    for _ in range(3):
        assert session.advance()
        label_open(session, truth)
    cal = session.data.student[session.data.calibration]
    assert len(seen) == 2
    for x in seen:
        assert not (np.abs(x[:, None, :] - cal[None]).max(axis=2) == 0).any()
    # and the strategy's size-target sample is drawn from the pool only
    assert not set(session.data.size_sample) & set(session.data.calibration)


def test_prepare_caches_the_pool_clustering(session_dir):
    from ccma.acquisition import subpool_cache_name, subpool_clusters

    sdir, _ = session_dir
    session = Session(sdir, batch=4)
    clusters = sdir / "data" / "clusters" / "session" / "tiny-clip"
    session.prepare()
    assert not clusters.exists()       # 68 pool images <= M = 5000: scored whole, no k-means
    session.params = {**session.params, "subpool_size": 20}
    session.prepare()
    p = session.params
    cache = clusters / subpool_cache_name(subpool_clusters(20, p["per_cluster"]), p["kmeans_iters"], 0)
    assert cache.exists()
    with np.load(cache) as saved:
        assert len(saved["assign"]) == len(session.data.pool)
    stamp = cache.stat().st_mtime_ns
    assert session.advance()          # the cold start reads the cache, does not redo it
    assert cache.stat().st_mtime_ns == stamp and len(session.store.open_items()) == 4 + 1


def test_other_strategies_start_with_a_random_batch(session_dir):
    sdir, _ = session_dir
    session = Session(sdir, strategy="margins", batch=5)
    assert session.advance()
    assert session.store.rounds()[0]["fallback"] == "initial batch: random"
    with pytest.raises(CCMAError, match="--strategy: unknown"):
        Session(sdir, strategy="nope")


# ------------------------------------------------------------------ CSV exchange and export

def read_csv(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_next_and_import_round_trip(session_dir, tmp_path, capsys):
    sdir, truth = session_dir
    out = tmp_path / "batch.csv"
    assert main(["session", "next", "--dir", str(sdir), "--out", str(out), "--batch", "6"]) == 0
    rows = read_csv(out)
    assert len(rows) == 6 + 2 and set(rows[0]) == {"path", "row_id", "teacher_set", "student_set", "label"}
    assert all(r["teacher_set"] and set(r["teacher_set"].split("|")) <= set(CLASSES) for r in rows)
    # the same batch again while it is open; nothing new queued
    assert main(["session", "next", "--dir", str(sdir), "--out", str(tmp_path / "again.csv")]) == 0
    assert read_csv(tmp_path / "again.csv") == rows
    # an unknown class stops the import before anything is recorded
    bad = [{**r, "label": CLASSES[truth[r["path"]]]} for r in rows]
    bad[-1]["label"] = "giraffe"
    write_csv(tmp_path / "bad.csv", bad)
    assert main(["session", "import", "--dir", str(sdir), str(tmp_path / "bad.csv")]) == 2
    assert "'giraffe' is not a class" in capsys.readouterr().err
    assert Store(sdir).answers() == {}
    answers = [{**r, "label": CLASSES[truth[r["path"]]]} for r in rows]
    answers[0]["label"], answers[1]["label"] = "<skip>", "<none>"
    write_csv(tmp_path / "answers.csv", answers)
    assert main(["session", "import", "--dir", str(sdir), str(tmp_path / "answers.csv")]) == 0
    got = Store(sdir).answers()
    assert {r: (a.kind, a.label) for r, a in got.items()} == {
        int(r["row_id"]): (("skip", None) if i == 0 else ("none", None) if i == 1
                           else ("label", truth[r["path"]])) for i, r in enumerate(rows)}
    # another annotator's import of the same images changes nothing
    assert main(["session", "import", "--dir", str(sdir), str(tmp_path / "answers.csv"),
                 "--annotator", "bob"]) == 2
    assert "already answered by 'csv'; nothing imported" in capsys.readouterr().err
    assert Store(sdir).answers() == got
    # the next round: new images only; skipped and 'none' images are never asked again
    assert main(["session", "next", "--dir", str(sdir), "--out", str(out), "--batch", "6"]) == 0
    again = read_csv(out)
    assert not {r["row_id"] for r in again} & {r["row_id"] for r in rows}
    assert all(r["student_set"] for r in again)   # a student now exists


def write_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_export_contents(session_dir, tmp_path):
    sdir, truth = session_dir
    session = Session(sdir, batch=8, calibration_per_batch=6)
    for _ in range(2):
        session.advance()
        label_open(session, truth)
    summary = session.export(tmp_path / "out")
    rows = read_csv(tmp_path / "out" / "labels.csv")
    paths = session.store.paths()
    assert [r["path"] for r in rows] == paths and len(rows) == len(truth)
    answers = session.store.answers()
    for r in rows:
        a = answers.get(int(r["row_id"]))
        assert r["human_label"] == ("" if a is None else CLASSES[a.label])
        assert r["role"] == ("calibration" if int(r["row_id"]) in set(session.data.calibration) else "train")
    # the exported head reproduces the predictions, probabilities and sets
    head, meta = load_head(tmp_path / "out" / "head.pt")
    assert meta["classnames"] == CLASSES and meta["student_backbone"] == "tiny-dinov2"
    with torch.no_grad():
        p = torch.softmax(head(torch.as_tensor(session.data.student)), dim=1).double().numpy()
    assert [r["student_prediction"] for r in rows] == [CLASSES[c] for c in p.argmax(1)]
    np.testing.assert_allclose([float(r["student_probability"]) for r in rows], p.max(1), atol=1e-5)
    _, _, cal_rows, cal_labels = session.labelled()
    assert len(cal_rows) == 12 and summary["calibration_labels"] == 12
    n = len(cal_rows)
    k = math.ceil((n + 1) * 0.9)                       # the k-th smallest calibration score
    t = np.sort(-np.log(p[cal_rows, cal_labels]))[k - 1]
    for r, probs in zip(rows, p):
        expected = {CLASSES[c] for c in range(10) if -math.log(probs[c]) <= t + 1e-9}
        assert set(filter(None, r["conformal_set"].split("|"))) == expected
    assert summary["coverage_guarantee"].startswith(">= 0.900")
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["train_labels"] == 16


# ------------------------------------------------------------------ the coverage guarantee

def test_calibration_gives_the_stated_coverage():
    """Split conformal on a uniform calibration draw (the session's own draw and threshold):
    mean coverage over draws lies in [1 - alpha, 1 - alpha + 1/(n + 1)] (Monte-Carlo error
    of 400 draws: about 0.002)."""
    rng = np.random.default_rng(0)
    n_images, k, n, alpha = 3000, 10, 49, 0.1
    logits = rng.normal(size=(n_images, k)) * 2
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    labels = np.array([rng.choice(k, p=np.exp(lp)) for lp in log_probs])
    covered = []
    for seed in range(400):
        cal = calibration_draw(np.arange(n_images), n, seed)
        t, how = threshold(log_probs[cal], labels[cal], alpha, log_probs[:10], 3.0)
        assert how.startswith("coverage")
        rest = np.setdiff1d(np.arange(n_images), cal)
        covered.append(np.mean(-log_probs[rest, labels[rest]] <= t))
    assert 1 - alpha - 0.006 <= np.mean(covered) <= 1 - alpha + 1 / (n + 1) + 0.006
    # fewer than 1/alpha - 1 labels: no finite coverage threshold, the size target is used
    t, how = threshold(log_probs[:5], labels[:5], alpha, log_probs, 3.0)
    assert how == "mean set size 3" and np.isclose(np.mean((-log_probs <= t).sum(1)), 3.0, atol=0.01)


# ------------------------------------------------------------------ a killed server

def start_server(sdir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "ccma.cli", "session", "serve", "--dir", str(sdir),
                             "--port", "0", "--batch", "8", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    line = proc.stdout.readline()
    if not line.startswith("serving "):
        proc.kill()
        raise AssertionError(f"server did not start: {line!r} {proc.stderr.read()}")
    return proc, line.split()[1].split("?")[0]


def test_killed_server_keeps_every_label(session_dir):
    import httpx

    sdir, truth = session_dir
    proc, url = start_server(sdir)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            deadline = time.monotonic() + 60
            while not http.get("/api/batch", params={"client": "a"}).json()["items"]:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            items = http.get("/api/batch", params={"client": "a"}).json()["items"]
            y = {i: truth[p] for i, p in enumerate(Store(sdir).paths())}
            given = {}
            for it in items[:5]:
                r = http.post("/api/answer", json={"client": "a", "row": it["row"], "kind": "label",
                                                    "label": y[it["row"]]})
                assert r.status_code == 200
                given[it["row"]] = y[it["row"]]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert {r: a.label for r, a in Store(sdir).answers().items()} == given
        proc, url = start_server(sdir)
        with httpx.Client(base_url=url, timeout=30) as http:
            batch = http.get("/api/batch", params={"client": "a"}).json()
            assert batch["round"] == 1
            shown = {it["row"]: it["answer"] for it in batch["items"]}
            assert {r: shown[r]["label"] for r in given} == given       # kept, shown after restart
            for row, answer in shown.items():
                if answer is None:
                    assert http.post("/api/answer", json={"client": "a", "row": row, "kind": "label",
                                                          "label": y[row]}).status_code == 200
            deadline = time.monotonic() + 60
            while http.get("/api/state").json()["round"] < 2:
                assert time.monotonic() < deadline, "the session did not continue after the restart"
                time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


# ------------------------------------------------------------------ two annotators

def test_two_annotators(session_dir):
    sdir, truth = session_dir
    session = Session(sdir, batch=8)
    session.advance()
    client = TestClient(create_app(session, page_size=5))
    a = [it["row"] for it in client.get("/api/batch", params={"client": "a"}).json()["items"]]
    b = [it["row"] for it in client.get("/api/batch", params={"client": "b"}).json()["items"]]
    assert len(a) == 5 and len(b) == 5 and not set(a) & set(b)      # nobody sees another's image
    y = oracle(session, truth)
    r = client.post("/api/answer", json={"client": "b", "row": a[0], "kind": "label", "label": int(y[a[0]])})
    assert r.status_code == 409 and "being labelled by another annotator" in r.json()["detail"]
    assert client.post("/api/answer", json={"client": "a", "row": a[0], "kind": "label",
                                            "label": int(y[a[0]])}).status_code == 200
    r = client.post("/api/answer", json={"client": "b", "row": a[0], "kind": "skip"})
    assert r.status_code == 409
    assert r.json()["detail"] == f"image {a[0]} was already answered by another annotator (as {CLASSES[y[a[0]]]!r})"
    # both answer their own images at once: every label is there
    errors = []

    def answer_all(name, rows):
        for row in rows:
            res = client.post("/api/answer", json={"client": name, "row": row, "kind": "label",
                                                    "label": int(y[row])})
            if res.status_code != 200:
                errors.append(res.text)

    threads = [threading.Thread(target=answer_all, args=("a", a[1:])), threading.Thread(target=answer_all, args=("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    got = Store(sdir).answers()
    assert {r: got[r].label for r in a + b} == {r: int(y[r]) for r in a + b}
    assert {got[r].annotator for r in a} == {"a"} and {got[r].annotator for r in b} == {"b"}


# ------------------------------------------------------------------ security

def test_images_only_by_row_id(session_dir):
    sdir, _ = session_dir
    session = Session(sdir)
    client = TestClient(create_app(session))
    ok = client.get("/thumb/0")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert (sdir / "thumbs" / "0.jpg").exists()                       # made once, kept
    assert client.get("/image/0").content == (Path(session.meta["images_root"]) / session.store.paths()[0]).read_bytes()
    for attempt in ["/image/..%2F..%2Fsession.sqlite", "/thumb/..%2Fsession.sqlite", "/image/../session.sqlite",
                    "/static/..%2F..%2Fsession%2Fstore.py", "/static/%2E%2E/store.py", "/image/-1",
                    f"/image/{len(session.store.paths())}", "/image/%2Fetc%2Fpasswd", "/session.sqlite"]:
        r = client.get(attempt)
        assert r.status_code in (404, 422), attempt
        assert b"SQLite format" not in r.content and b"import" not in r.content, attempt
    # nothing is accepted as an upload
    assert client.put("/image/0", content=b"x").status_code == 405
    big = client.post("/api/answer", content=b"{" + b" " * 20000 + b"}", headers={"content-type": "application/json"})
    assert big.status_code == 413


def test_token(session_dir):
    sdir, _ = session_dir
    session = Session(sdir)
    client = TestClient(create_app(session, token="s3cret"))
    for path in ("/", "/api/state", "/thumb/0", "/static/app.js"):
        assert client.get(path).status_code == 401, path
    assert client.get("/api/state", headers={"X-CCMA-Token": "wrong"}).status_code == 401
    assert client.get("/api/state", headers={"X-CCMA-Token": "s3cret"}).status_code == 200
    assert client.get("/?token=s3cret").status_code == 200             # sets the page's cookie
    assert client.get("/static/app.js").status_code == 200
    with pytest.raises(CCMAError, match="--host 0.0.0.0: serving beyond this machine needs --token"):
        serve(session, host="0.0.0.0", port=0)
