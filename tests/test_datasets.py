"""Dataset loaders on small fake archives written in each source's real on-disk format.

Where torchvision has the dataset, its own class reads the same fake archive and the
loader must agree with it on label indices and row order (the paper takes its class lists
from torchvision). The fake archives use the shipped raw class ids, so each test also shows
that the shipped natural-language names line up with the labels the loader produces.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import pickle
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ccma.cli import main
from ccma.datasets import DATASETS, Resource, classnames, get_dataset, load_dataset
from ccma.datasets.base import stratified_split
from ccma.datasets.loaders import shipped_pairs
from ccma.download import download, marker_path
from ccma.errors import CCMAError

NAMED = ["cifar100", "food101", "caltech101", "caltech256", "domainnet_real", "digits"]


def raw_ids(name):
    return [raw for raw, _ in shipped_pairs(name)]


def jpeg(path: Path, seed: int, size=(8, 6), mode="RGB") -> None:
    """A tiny JPEG whose pixels encode ``seed`` (so rows can be told apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, "JPEG")


def split_rows(data):
    """{key: label} over train and test."""
    out = {}
    for split in (data.train, data.test):
        out.update(zip(split.images.keys, split.labels.tolist()))
    return out


def assert_stratified_80_20(data):
    k = data.n_classes
    tr = np.bincount(data.train.labels, minlength=k)
    te = np.bincount(data.test.labels, minlength=k)
    assert te.tolist() == [max(1, int(np.floor(0.2 * n + 0.5))) for n in tr + te]
    assert not set(data.train.images.keys) & set(data.test.images.keys)


# ------------------------------------------------------------------ shipped class names

@pytest.mark.parametrize("name", NAMED)
def test_shipped_classnames_are_clean_and_complete(name):
    names = classnames(name)
    assert len(names) == DATASETS[name].n_classes
    assert len(set(names)) == len(names)
    assert all(n == n.strip() and "_" not in n and "  " not in n and "\t" not in n for n in names)


def test_shipped_raw_ids_follow_the_sources_label_order():
    assert raw_ids("cifar100") == sorted(raw_ids("cifar100"))          # meta order is alphabetical
    assert raw_ids("food101") == sorted(raw_ids("food101"))            # torchvision: sorted(json keys)
    assert raw_ids("caltech101") == sorted(raw_ids("caltech101"))      # torchvision: sorted(listdir)
    assert "BACKGROUND_Google" not in raw_ids("caltech101")
    c256 = raw_ids("caltech256")
    assert [int(r[:3]) for r in c256] == list(range(1, 257)) and "257.clutter" not in c256
    # DomainNet's official lists number the classes in case- and punctuation-blind order
    dn = raw_ids("domainnet_real")
    assert dn == sorted(dn, key=lambda s: re.sub(r"[^a-z0-9]", "", s.lower()))
    assert classnames("cifar100")[1] == "aquarium fish"
    assert classnames("caltech101")[:2] == ["off-center face", "centered face"]


# ------------------------------------------------------------------ CIFAR-100

def write_cifar100(root: Path, n_train=7, n_test=5, names=None, seed=0) -> dict:
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    names = names or raw_ids("cifar100")
    with open(base / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": names, "coarse_label_names": [f"super{i}" for i in range(20)]},
                    fh, protocol=2)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        d = {"batch_label": f"{split} batch", "filenames": [f"img_{i}.png" for i in range(n)],
             "fine_labels": rng.integers(0, 100, n).tolist(), "coarse_labels": rng.integers(0, 20, n).tolist(),
             "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        with open(base / split, "wb") as fh:
            pickle.dump(d, fh, protocol=2)
        out[split] = d
    return out


def test_cifar100_matches_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar

    raw = tmp_path / "raw" / "cifar100"
    write_cifar100(raw)
    data = load_dataset("cifar100", raw)
    assert data.classnames == classnames("cifar100") and data.split_rule == "official"
    # torchvision checks the md5 of the real files; the fake archive has its own bytes
    monkeypatch.setattr(tvd.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for split, train in ((data.train, True), (data.test, False)):
        tv = tvd.CIFAR100(str(raw), train=train)
        assert split.labels.tolist() == tv.targets
        assert np.array_equal(np.stack([np.asarray(split.images[i]) for i in range(len(split.labels))]), tv.data)
        assert [data.classnames[y] for y in split.labels] == [tv.classes[y].replace("_", " ") for y in tv.targets]


def test_cifar100_wrong_class_list_is_one_line(tmp_path):
    names = raw_ids("cifar100")
    names[3], names[4] = names[4], names[3]
    write_cifar100(tmp_path, names=names)
    with pytest.raises(CCMAError, match=r"class 3 is 'beaver', expected 'bear'") as err:
        load_dataset("cifar100", tmp_path)
    assert "\n" not in str(err.value)


def test_missing_archive_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(CCMAError, match="cifar-100-python: not found; fetch cifar100 with 'ccma download"):
        load_dataset("cifar100", tmp_path)


# ------------------------------------------------------------------ Food-101

def test_food101_matches_torchvision(tmp_path):
    import torchvision.datasets as tvd

    base = tmp_path / "food-101"
    classes = raw_ids("food101")
    rng = np.random.default_rng(1)
    meta = {"train": {}, "test": {}}
    # the real json lists classes in meta/classes.txt order ('cheesecake' before 'cheese_plate')
    file_order = sorted(classes, key=lambda c: c.replace("_", "~"))
    for k, c in enumerate(file_order):
        for split, n in (("train", 2), ("test", 1)):
            ids = [f"{c}/{int(i)}" for i in rng.choice(10**6, n, replace=False)]
            meta[split][c] = ids
            for j, rel in enumerate(ids):
                jpeg(base / "images" / f"{rel}.jpg", 10 * k + j)
    (base / "meta").mkdir()
    for split in meta:
        (base / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
        (base / "meta" / f"{split}.txt").write_text("\n".join(i for ids in meta[split].values() for i in ids))
    (base / "meta" / "classes.txt").write_text("\n".join(file_order))
    (base / "meta" / "labels.txt").write_text("\n".join(c.replace("_", " ").capitalize() for c in file_order))

    data = load_dataset("food101", tmp_path)
    assert data.classnames == classnames("food101")
    for split, name in ((data.train, "train"), (data.test, "test")):
        tv = tvd.Food101(str(tmp_path), split=name)
        assert split.labels.tolist() == tv._labels
        assert [str(base / "images" / k) for k in split.images.keys] == [str(p) for p in tv._image_files]
        assert [data.classnames[y] for y in split.labels] == [tv.classes[y].replace("_", " ") for y in tv._labels]
    assert data.test.images[0].size == (8, 6)


# ------------------------------------------------------------------ Caltech

def write_caltech(root: Path, folder: str, classes: list[str], extra: list[str], name_of) -> None:
    base = root / folder
    rng = np.random.default_rng(2)
    for i, c in enumerate(classes + extra):
        for j in range(1, int(rng.integers(2, 7)) + 1):
            jpeg(base / c / name_of(i, j), 100 * i + j, mode="L" if j == 1 else "RGB")  # some greyscale


def test_caltech101_matches_torchvision_without_background(tmp_path):
    import torchvision.datasets as tvd

    raw = tmp_path / "caltech101"
    write_caltech(raw, "101_ObjectCategories", raw_ids("caltech101"), ["BACKGROUND_Google"],
                  lambda i, j: f"image_{j:04d}.jpg")
    data = load_dataset("caltech101", raw)
    tv = tvd.Caltech101(str(tmp_path))
    expected = {f"{tv.categories[y]}/image_{i:04d}.jpg": y for y, i in zip(tv.y, tv.index)}
    assert split_rows(data) == expected
    assert data.classnames == classnames("caltech101") and data.n_classes == 101
    assert_stratified_80_20(data)
    for part in (data.train, data.test):        # each part keeps the dataset's own row order
        assert part.images.keys == sorted(part.images.keys)
    assert data.train.images[0].mode == "RGB"   # greyscale files come out as RGB
    again = load_dataset("caltech101", raw)     # the split is fixed (split seed 0)
    assert again.test.images.keys == data.test.images.keys


def test_caltech256_matches_torchvision_without_clutter(tmp_path):
    import torchvision.datasets as tvd

    raw = tmp_path / "caltech256"
    ids = raw_ids("caltech256")
    write_caltech(raw, "256_ObjectCategories", ids, ["257.clutter"], lambda i, j: f"{i + 1:03d}_{j:04d}.jpg")
    jpeg(raw / "256_ObjectCategories" / "056.dog" / "greg" / "extra.jpg", 7)   # the real stray folder
    (raw / "256_ObjectCategories" / "198.spider" / "RENAME2").write_text("")   # and the stray file
    data = load_dataset("caltech256", raw)
    tv = tvd.Caltech256(str(tmp_path))
    expected = {f"{tv.categories[y]}/{y + 1:03d}_{i:04d}.jpg": y for y, i in zip(tv.y, tv.index) if y < 256}
    assert split_rows(data) == expected
    assert data.classnames == classnames("caltech256") and data.n_classes == 256
    assert_stratified_80_20(data)


# ------------------------------------------------------------------ DomainNet

def write_domainnet(raw: Path, ids: list[str], break_label: int | None = None) -> dict:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    lists = {"train": [], "test": []}
    with zipfile.ZipFile(raw / "real.zip", "w") as zf:
        for label, c in enumerate(ids):
            for n in range(1, 4):
                member = f"real/{c}/real_{label + 1:03d}_{n:06d}.jpg"
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(buf, "JPEG")
                zf.writestr(member, buf.getvalue())
                lists["train" if n < 3 else "test"].append((member, label))
    for split, rows in lists.items():
        order = rng.permutation(len(rows))       # the official lists are not sorted by class
        lines = [f"{rows[i][0]} {rows[i][1] if rows[i][1] != break_label else 0}" for i in order]
        (raw / f"real_{split}.txt").write_text("\n".join(lines) + "\n")
        lists[split] = [rows[i] for i in order]
    return lists


def test_domainnet_real_reads_the_zip_in_list_order(tmp_path):
    raw = tmp_path / "domainnet_real"
    lists = write_domainnet(raw, raw_ids("domainnet_real"))
    data = load_dataset("domainnet_real", raw)
    assert data.classnames == classnames("domainnet_real") and data.n_classes == 345
    for split, rows in ((data.train, lists["train"]), (data.test, lists["test"])):
        assert split.images.keys == [m for m, _ in rows]
        assert split.labels.tolist() == [y for _, y in rows]
    # a DataLoader worker gets a pickled copy that opens the archive itself
    clone = pickle.loads(pickle.dumps(data.test.images))
    assert np.array_equal(np.asarray(clone[3]), np.asarray(data.test.images[3]))
    assert clone[3].size == (7, 5)


def test_domainnet_inconsistent_lists_fail_in_one_line(tmp_path):
    write_domainnet(tmp_path / "a", raw_ids("domainnet_real"), break_label=5)
    with pytest.raises(CCMAError, match="label 0 names both"):
        load_dataset("domainnet_real", tmp_path / "a")
    write_domainnet(tmp_path / "b", raw_ids("domainnet_real"))
    (tmp_path / "b" / "real_test.txt").write_text("real/zebra/missing.jpg 343\n")
    with pytest.raises(CCMAError, match="lacks 'real/zebra/missing.jpg'"):
        load_dataset("domainnet_real", tmp_path / "b")


# ------------------------------------------------------------------ a user's image folder

def test_imagefolder_flat_with_mapping_file(tmp_path):
    raw = tmp_path / "raw" / "imagefolder-birds"
    folders = {"blue_jay": 5, "Cardinal": 6, "wren": 10}
    for i, (c, n) in enumerate(folders.items()):
        for j in range(n):
            jpeg(raw / c / ("sub" if j == 0 else "") / f"{j:02d}.png", 10 * i + j)
    (raw / "wren" / "notes.txt").write_text("not an image")
    (raw / "classnames.txt").write_text("wren\tHouse wren\nblue_jay\tblue jay\nCardinal\tnorthern cardinal\n")
    assert get_dataset("imagefolder-birds").name == "imagefolder"
    data = load_dataset("imagefolder-birds", raw)
    assert data.classnames == ["northern cardinal", "blue jay", "House wren"]   # sorted folders: C < b < w
    rows = split_rows(data)
    assert len(rows) == 21
    assert rows["Cardinal/sub/00.png"] == 0 and rows["blue_jay/sub/00.png"] == 1 and rows["wren/09.png"] == 2
    assert "wren/notes.txt" not in rows
    assert np.bincount(data.test.labels).tolist() == [1, 1, 2]


def test_imagefolder_explicit_split_with_name_list(tmp_path):
    raw = tmp_path / "mine"
    for split, n in (("train", 3), ("test", 1)):
        for i, c in enumerate(["cat", "dog"]):
            for j in range(n):
                jpeg(raw / split / c / f"{j}.jpg", 10 * i + j)
    names = tmp_path / "names.txt"
    names.write_text("tabby cat\nbeagle\n")
    data = load_dataset("imagefolder", raw, classnames_file=names)
    assert data.classnames == ["tabby cat", "beagle"] and data.split_rule == "official"
    assert data.train.labels.tolist() == [0, 0, 0, 1, 1, 1] and data.test.images.keys == ["cat/0.jpg", "dog/0.jpg"]
    plain = load_dataset("imagefolder", raw)
    assert plain.classnames == ["cat", "dog"]
    names.write_text("just one\n")
    with pytest.raises(CCMAError, match="1 names for 2 class folders"):
        load_dataset("imagefolder", raw, classnames_file=names)
    (raw / "test" / "bird").mkdir()
    with pytest.raises(CCMAError, match="class folder not in"):
        load_dataset("imagefolder", raw)
    jpeg(tmp_path / "only-train" / "train" / "cat" / "0.jpg", 0)
    with pytest.raises(CCMAError, match="a train/ folder needs a test/ folder"):
        load_dataset("imagefolder", tmp_path / "only-train")
    with pytest.raises(CCMAError, match="nowhere: not found; put the images there"):
        load_dataset("imagefolder-x", tmp_path / "nowhere")


def test_imagefolder_mapping_must_cover_every_folder(tmp_path):
    for c in ("a_b", "c"):
        for j in range(2):
            jpeg(tmp_path / c / f"{j}.jpg", j)
    (tmp_path / "classnames.txt").write_text("a_b\tan ab\n")
    with pytest.raises(CCMAError, match="no name for class folder 'c'"):
        load_dataset("imagefolder", tmp_path)
    with pytest.raises(CCMAError, match="only for image folders"):
        load_dataset("digits", tmp_path, classnames_file=tmp_path / "classnames.txt")


# ------------------------------------------------------------------ digits and the split rule

def test_digits_split_is_stratified_80_20_with_seed_0(tmp_path):
    from sklearn.datasets import load_digits

    data = load_dataset("digits", tmp_path)
    assert (len(data.train.labels), len(data.test.labels)) == (1438, 359)  # 20 % of each class, rounded
    assert data.classnames == classnames("digits")
    assert_stratified_80_20(data)
    assert all(int(a) < int(b) for a, b in zip(data.test.images.keys, data.test.images.keys[1:]))
    sk = load_digits()
    i = int(data.test.images.keys[5])
    assert data.test.labels[5] == sk.target[i]
    img = np.asarray(data.test.images[5])
    assert img.shape == (32, 32, 3)
    assert np.array_equal(img[::4, ::4, 0], np.rint(sk.images[i] * 255 / 16).astype(np.uint8))


def test_stratified_split_needs_two_per_class():
    from ccma.datasets.base import ArrayImages, Split

    split = Split(ArrayImages(np.zeros((5, 2, 2, 3), np.uint8), list("abcde")), [0, 0, 1, 1, 2])
    with pytest.raises(CCMAError, match="class 'z' has 1 image"):
        stratified_split(split, ["x", "y", "z"])


def test_unknown_and_imageless_datasets(tmp_path):
    with pytest.raises(CCMAError, match="unknown dataset 'imagenet'"):
        get_dataset("imagenet")
    with pytest.raises(CCMAError, match="synthetic: no images: 'ccma synth' writes"):
        load_dataset("synthetic", tmp_path)


# ------------------------------------------------------------------ ccma download

@pytest.fixture
def http_dir(tmp_path):
    """Serve tmp_path/www over HTTP on localhost; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(www), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def with_resources(monkeypatch, name, *resources):
    """Dataset ``name`` of the registry, fetching ``resources`` instead of its own."""
    monkeypatch.setitem(DATASETS, name, dataclasses.replace(DATASETS[name], resources=resources))


def test_download_checks_md5_unpacks_and_is_idempotent(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    src = tmp_path / "src"
    write_caltech(src, "256_ObjectCategories", raw_ids("caltech256"), [], lambda i, j: f"{i + 1:03d}_{j:04d}.jpg")
    with tarfile.open(www / "256_ObjectCategories.tar", "w") as tar:
        tar.add(src / "256_ObjectCategories", arcname="256_ObjectCategories")
    md5 = hashlib.md5((www / "256_ObjectCategories.tar").read_bytes()).hexdigest()
    resource = Resource(f"{url}/256_ObjectCategories.tar", "256_ObjectCategories.tar", md5)
    with_resources(monkeypatch, "caltech256", resource)
    raw = tmp_path / "data" / "raw" / "caltech256"
    logs = []
    download("caltech256", raw, log=logs.append)
    assert marker_path(raw, resource).exists() and not (raw / resource.filename).exists()
    assert load_dataset("caltech256", raw).n_classes == 256
    (www / "256_ObjectCategories.tar").unlink()      # a second call must not fetch again
    download("caltech256", raw, log=logs.append)
    assert logs == ["caltech256: 256_ObjectCategories.tar fetched", "caltech256: 256_ObjectCategories.tar already present"]

    (www / "bad.tar").write_bytes(b"not the archive")
    bad = Resource(f"{url}/bad.tar", "bad.tar", md5)
    with_resources(monkeypatch, "caltech256", bad)
    with pytest.raises(CCMAError, match="failed its md5 check"):
        download("caltech256", tmp_path / "other", log=logs.append)
    assert not (tmp_path / "other" / "bad.tar").exists()   # nothing half-written looks finished


def test_domainnet_downloads_are_checked_against_their_md5(tmp_path, http_dir, monkeypatch):
    www, url = http_dir
    published = DATASETS["domainnet_real"].resources
    assert [r.filename for r in published] == ["real.zip", "real_train.txt", "real_test.txt"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", r.md5) for r in published)
    (www / "real_train.txt").write_text("real/zebra/real_345_000001.jpg 344\n")   # not the official list
    listed = published[1]
    with_resources(monkeypatch, "domainnet_real", dataclasses.replace(listed, url=f"{url}/real_train.txt"))
    raw = tmp_path / "raw"
    with pytest.raises(CCMAError, match=rf"real_train.txt failed its md5 check \(expected {listed.md5}\)"):
        download("domainnet_real", raw)
    assert not list(raw.iterdir())


def test_files_fetched_before_their_md5_was_known_are_checked(tmp_path, monkeypatch):
    content = b"real/aircraft_carrier/real_001_000001.jpg 0\n"
    known = Resource("http://127.0.0.1:9/real_train.txt", "real_train.txt", hashlib.md5(content).hexdigest(),
                     extract=False)   # unreachable: nothing may be fetched again
    with_resources(monkeypatch, "domainnet_real", known)
    raw = tmp_path / "raw"
    raw.mkdir()
    marker = marker_path(raw, known)
    unchecked = json.dumps({"url": known.url, "md5": None})   # what a run without the md5 recorded
    (raw / "real_train.txt").write_bytes(content)
    marker.write_text(unchecked)
    logs = []
    download("domainnet_real", raw, log=logs.append)
    download("domainnet_real", raw, log=logs.append)
    assert logs == ["domainnet_real: real_train.txt verified", "domainnet_real: real_train.txt already present"]
    assert json.loads(marker.read_text())["md5"] == known.md5

    (raw / "real_train.txt").write_bytes(content[:-5])   # e.g. an interrupted copy
    marker.write_text(unchecked)
    with pytest.raises(CCMAError, match=f"real_train.txt does not match its md5 {known.md5}; delete it and "
                                        "run 'ccma download' again"):
        download("domainnet_real", raw)


def test_download_offline_is_one_line(tmp_path, monkeypatch, capsys):
    with_resources(monkeypatch, "domainnet_real",
                   Resource("http://127.0.0.1:9/real_train.txt", "real_train.txt", extract=False))
    assert main(["download", "--data-dir", str(tmp_path), "--dataset", "domainnet_real"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("ccma download: error: domainnet_real: could not reach http://127.0.0.1:9/real_train.txt")
    assert not list((tmp_path / "raw" / "domainnet_real").iterdir())


def test_download_of_bundled_and_user_datasets(tmp_path, capsys):
    assert main(["download", "--data-dir", str(tmp_path), "--dataset", "digits"]) == 0
    assert "digits: nothing to download" in capsys.readouterr().out
    assert main(["download", "--data-dir", str(tmp_path), "--dataset", "imagefolder-x"]) == 2
    assert "put your images in" in capsys.readouterr().err
