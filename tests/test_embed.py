"""Backbones, ``ccma embed`` and ``ccma prototypes``, offline with the tiny random models.

tiny-clip (an open_clip config registered with ``open_clip.add_model_config``) and
tiny-dinov2 (a ``Dinov2Config``) run through the same code as ViT-L-14 / DINOv2-large; only
the construction of the model differs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import zarr

from ccma.cli import main
from ccma.datasets import classnames, load_dataset
from ccma.embed import (BACKBONES, TINY_DINOV2, TINY_DINOV2_PROCESSOR, Backbone, activation_for,
                        embed_dataset, l2_normalize, load_backbone, resolve_backbone)
from ccma.errors import CCMAError, StoreError
from ccma.features import check_same_rows, feature_path, prototype_path, read_features, read_prototypes
from ccma.prototypes import TEMPLATES, build_prototypes, check_templates, class_prototypes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def encoders():
    return {name: load_backbone(BACKBONES[name], CPU) for name in ("tiny-clip", "tiny-dinov2")}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "unused")


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    """digits through the real CLI: embed both tiny backbones, then the teacher's prototypes."""
    d = tmp_path_factory.mktemp("digits")
    common = ["--data-dir", str(d), "--dataset", "digits", "--device", "cpu", "--no-progress"]
    assert main(["embed", *common, "--backbone", "tiny-clip", "--workers", "1", "--batch-size", "100",
                 "--chunk-rows", "500"]) == 0
    assert main(["embed", *common, "--backbone", "tiny-dinov2", "--workers", "0"]) == 0
    assert main(["prototypes", "--data-dir", str(d), "--dataset", "digits", "--backbone", "tiny-clip",
                 "--device", "cpu"]) == 0
    return d


def subset(data, n_train, n_test):
    """The first rows of each split, as a smaller dataset of the same kind."""
    import dataclasses

    return dataclasses.replace(data, train=data.train.subset(np.arange(n_train)),
                               test=data.test.subset(np.arange(n_test)))


# ------------------------------------------------------------------ backbones

def test_registry_defaults_and_custom_models():
    assert resolve_backbone("clip-vit-l-14") == Backbone("clip-vit-l-14", "open_clip", "ViT-L-14", "openai")
    assert resolve_backbone("dinov2-large") == Backbone("dinov2-large", "transformers", "facebook/dinov2-large")
    assert resolve_backbone("clip-vit-g-14").model == "ViT-g-14"
    assert {f"dinov2-{s}" for s in ("small", "base", "large", "giant")} <= set(BACKBONES)
    custom = resolve_backbone("clip-b16-laion", open_clip_model="ViT-B-16", pretrained="laion2b_s34b_b88k")
    assert (custom.library, custom.model, custom.pretrained) == ("open_clip", "ViT-B-16", "laion2b_s34b_b88k")
    assert resolve_backbone("dino-b", hf_model="facebook/dinov2-base").library == "transformers"
    with pytest.raises(CCMAError, match="is not a tag of open_clip model 'ViT-B-16'"):
        resolve_backbone("x", open_clip_model="ViT-B-16", pretrained="nope")
    with pytest.raises(CCMAError, match="is the registered"):
        resolve_backbone("dinov2-large", hf_model="facebook/dinov2-small")
    with pytest.raises(CCMAError, match="unknown backbone 'resnet'"):
        resolve_backbone("resnet")
    with pytest.raises(CCMAError, match="not a valid store name"):
        resolve_backbone("../x", hf_model="facebook/dinov2-small")


def test_tiny_models_are_seeded_and_leave_the_global_rng_alone(encoders):
    state = torch.random.get_rng_state()
    again = load_backbone(BACKBONES["tiny-dinov2"], CPU)
    assert torch.equal(torch.random.get_rng_state(), state)
    for a, b in zip(again.module.state_dict().values(), encoders["tiny-dinov2"].module.state_dict().values()):
        assert torch.equal(a, b)
    clip = encoders["tiny-clip"]
    assert clip.dim == 32 and clip.module.visual.image_size == (32, 32)
    assert type(clip.module).__module__.startswith("open_clip")
    assert type(encoders["tiny-dinov2"].module).__name__ == "Dinov2Model"


def test_activation_is_the_one_the_weights_were_trained_with():
    quick = {"clip-vit-l-14", "clip-vit-l-14-336", "clip-vit-b-16", "clip-vit-b-32"}   # OpenAI's CLIP
    for b in BACKBONES.values():
        if b.has_text:
            assert activation_for(b.model, b.pretrained) == ("quick_gelu" if b.name in quick else "gelu"), b.name
    assert activation_for("ViT-B-32", "laion400m_e31") == "quick_gelu"   # LAION weights trained with QuickGELU
    assert activation_for("ViT-B-32", "laion2b_s34b_b79k") == "gelu"
    assert activation_for("ViT-B-32-quickgelu", None) == "quick_gelu"    # random init: the config's own
    assert activation_for("ViT-B-32", None) == "gelu"


def test_open_clip_models_are_built_with_that_activation(monkeypatch):
    import open_clip
    from open_clip.transformer import QuickGELU

    build = open_clip.create_model_and_transforms
    monkeypatch.setattr("ccma.embed.fetch_weights", lambda backbone: None)
    # offline: the architecture load_backbone asks for, without loading the weights
    monkeypatch.setattr(open_clip, "create_model_and_transforms",
                        lambda model, pretrained=None, **kw: build(model, pretrained=None, **kw))
    laion = resolve_backbone("b32-laion", open_clip_model="ViT-B-32", pretrained="laion2b_s34b_b79k")
    for backbone, act, cls in ((BACKBONES["clip-vit-b-32"], "quick_gelu", QuickGELU),
                               (laion, "gelu", torch.nn.GELU)):
        enc = load_backbone(backbone, CPU)
        for tower in (enc.module.visual, enc.module.transformer):
            assert {type(m) for m in tower.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))} == {cls}
        assert enc.activation == enc.attrs()["activation"] == act


def test_hf_model_must_be_a_dinov2_checkpoint(tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model, ViTConfig

    vit, dino = tmp_path / "vit", tmp_path / "dino"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
              image_size=32, patch_size=8).save_pretrained(vit)
    saved = Dinov2Model(Dinov2Config(**TINY_DINOV2))
    saved.save_pretrained(dino)
    BitImageProcessor(**TINY_DINOV2_PROCESSOR).save_pretrained(dino)
    hub = {"someone/vit-tiny": vit, "someone/dinov2-tiny": dino}
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, allow_patterns: str(hub[repo]))
    capsys.readouterr()   # save_pretrained's progress bar

    code = main(["embed", "--data-dir", str(tmp_path), "--dataset", "digits", "--backbone", "vit-tiny",
                 "--hf-model", "someone/vit-tiny", "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "error: --hf-model: someone/vit-tiny is a 'vit' model, not DINOv2" in err
    enc = load_backbone(resolve_backbone("dinov2-tiny", hf_model="someone/dinov2-tiny"), CPU)
    assert type(enc.module).__name__ == "Dinov2Model" and enc.dim == 32 and enc.activation is None
    for a, b in zip(enc.module.state_dict().values(), saved.state_dict().values()):
        assert torch.equal(a, b)


def test_dinov2_feature_is_the_pooled_cls_token(encoders, digits):
    enc = encoders["tiny-dinov2"]
    pixels = torch.stack([enc.preprocess(digits.test.images[i]) for i in range(4)])
    assert pixels.shape == (4, 3, 32, 32)
    with torch.no_grad():
        cls = enc.module(pixel_values=pixels).last_hidden_state[:, 0]   # final-layernormed CLS token
    assert np.allclose(enc.encode_images(pixels), cls.numpy(), atol=1e-6)


# ------------------------------------------------------------------ digits end to end

def test_digits_stores_are_valid_and_row_aligned(digits_dir, digits, encoders):
    teacher = read_features(feature_path(digits_dir, "digits", "tiny-clip"))
    student = read_features(feature_path(digits_dir, "digits", "tiny-dinov2"))
    check_same_rows(teacher, student)
    assert teacher.attrs["row_fingerprints"] == student.attrs["row_fingerprints"]
    assert teacher.train.embeddings.dtype == np.float16 and teacher.dim == 32 and student.dim == 32
    assert np.array_equal(teacher.train.labels, digits.train.labels)
    assert np.array_equal(teacher.test.labels, digits.test.labels)
    a = teacher.attrs
    assert (a["library"], a["model"], a["pretrained"], a["precision"]) == ("open_clip", "ccma-tiny-clip", None, "float32")
    assert a["activation"] == "gelu" and student.attrs["activation"] is None
    assert set(a["versions"]) >= {"torch", "open_clip", "transformers"} and "Normalize" in a["preprocess"]
    assert a["classnames"] == classnames("digits") and a["complete"] is True
    assert student.attrs["model"] == "Dinov2Config(tiny)" and "BitImageProcessor" in student.attrs["preprocess"]
    # stored rows equal an independent forward pass over the same images
    for name, store in (("tiny-clip", teacher), ("tiny-dinov2", student)):
        enc = encoders[name]
        rows = [0, 7, 358]
        pixels = torch.stack([enc.preprocess(digits.test.images[i]) for i in rows])
        with torch.no_grad():
            raw = (enc.module.encode_image(pixels) if name == "tiny-clip"
                   else enc.module(pixel_values=pixels).pooler_output).numpy()
        expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
        assert np.allclose(store.test.embeddings[rows].astype(np.float32), expected, atol=2e-3)


def test_digits_prototypes_follow_spec(digits_dir, encoders):
    protos = read_prototypes(prototype_path(digits_dir, "digits", "tiny-clip"))
    assert protos.classnames == classnames("digits") and protos.templates == list(TEMPLATES)
    assert protos.attrs["backbone"] == "tiny-clip" and protos.prototypes.shape == (10, 32)
    assert protos.attrs["activation"] == "gelu"
    enc = encoders["tiny-clip"]
    tokenizer = enc.tokenizer
    for c in (0, 9):   # docs/method.md §2, class by class: normalise each prompt, average, normalise
        with torch.no_grad():
            e = enc.module.encode_text(tokenizer([t.format(protos.classnames[c]) for t in TEMPLATES])).numpy()
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        m = e.mean(0)
        assert np.allclose(protos.prototypes[c], m / np.linalg.norm(m), atol=1e-5)
    teacher = read_features(feature_path(digits_dir, "digits", "tiny-clip"))
    sims = teacher.test.embeddings.astype(np.float32) @ protos.prototypes.T
    assert protos.attrs["zero_shot_test_accuracy"] == pytest.approx(np.mean(sims.argmax(1) == teacher.test.labels))


def test_digits_stores_feed_the_al_loop(digits_dir):
    from ccma.loop import load_run_data

    assert main(["splits", "--data-dir", str(digits_dir), "--dataset", "digits",
                 "--teacher-backbone", "tiny-clip", "--student-backbone", "tiny-dinov2"]) == 0
    run = load_run_data(digits_dir, "digits", "tiny-clip", "tiny-dinov2")
    assert run.pool.n_classes == 10 and run.pool.teacher.shape[1] == 32
    protos = read_prototypes(prototype_path(digits_dir, "digits", "tiny-clip"))
    assert run.zero_shot == pytest.approx(protos.attrs["zero_shot_test_accuracy"])


# ------------------------------------------------------------------ resuming

KILLED_JOB = """
import dataclasses, os, signal, sys
import numpy as np, torch
from ccma.datasets import load_dataset
from ccma.embed import BACKBONES, embed_dataset, load_backbone

digits = load_dataset("digits", "unused")
small = dataclasses.replace(digits, train=digits.train.subset(np.arange(150)),
                            test=digits.test.subset(np.arange(40)))
encoder = load_backbone(BACKBONES["tiny-dinov2"], torch.device("cpu"))
forward, calls = encoder.encode_images, [0]

def dies(pixels):   # SIGKILL: no exception handler or cleanup runs
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(pixels)

encoder.encode_images = dies
embed_dataset(sys.argv[1], small, encoder, batch_size=16, chunk_rows=48, workers=0, progress=False)
"""


def test_killed_embedding_resumes_to_an_identical_store(tmp_path, digits, encoders):
    import subprocess
    import sys

    small = subset(digits, 150, 40)
    enc = encoders["tiny-dinov2"]
    kw = dict(batch_size=16, chunk_rows=48, workers=0, progress=False)
    whole = embed_dataset(tmp_path / "a", small, enc, **kw)

    # killed in the middle of the third train chunk (batches 7-9 of 16 rows make chunk 2)
    job = subprocess.run([sys.executable, "-c", KILLED_JOB, str(tmp_path / "b"), "8"], capture_output=True)
    assert job.returncode == -9, job.stderr.decode()[-2000:]
    path = feature_path(tmp_path / "b", "digits", "tiny-dinov2")
    with pytest.raises(StoreError, match="incomplete"):
        read_features(path)
    assert zarr.open_group(str(path), mode="r").attrs["done_chunks"] == {"train": [0, 1], "test": []}

    with pytest.raises(StoreError, match="different 'batch_size'"):
        embed_dataset(tmp_path / "b", small, enc, **{**kw, "batch_size": 8})
    resumed = embed_dataset(tmp_path / "b", small, enc, **kw)
    a, b = zarr.open_group(str(whole), mode="r"), zarr.open_group(str(resumed), mode="r")
    assert dict(a.attrs) == dict(b.attrs)
    for name in ("train/embeddings", "train/labels", "test/embeddings", "test/labels"):
        assert np.array_equal(a[name][...], b[name][...])
    assert read_features(resumed).train.embeddings.shape == (150, 32)


KILLED_CREATION = """
import dataclasses, os, signal, sys
import numpy as np, torch, zarr
from ccma.datasets import load_dataset
from ccma.embed import BACKBONES, embed_dataset, load_backbone

digits = load_dataset("digits", "unused")
small = dataclasses.replace(digits, train=digits.train.subset(np.arange(30)),
                            test=digits.test.subset(np.arange(10)))
create, calls = zarr.Group.create_array, [0]

def dies(self, *args, **kwargs):   # SIGKILL while the store's arrays are being created
    calls[0] += 1
    if calls[0] == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
    return create(self, *args, **kwargs)

zarr.Group.create_array = dies
embed_dataset(sys.argv[1], small, load_backbone(BACKBONES["tiny-dinov2"], torch.device("cpu")),
              batch_size=16, chunk_rows=16, workers=0, progress=False)
"""


def test_embedding_killed_while_creating_its_store_reruns(tmp_path, digits, encoders, monkeypatch):
    """Killed between two arrays of the store's creation, the same command then embeds (it
    refused the half-made store forever), and no temporary is left. (tests/test_stores.py
    covers the other states a cut-short creation left.)"""
    import subprocess
    import sys
    import time

    from ccma import atomic

    job = subprocess.run([sys.executable, "-c", KILLED_CREATION, str(tmp_path / "b"), "3"],
                         capture_output=True)
    assert job.returncode == -9, job.stderr.decode()[-2000:]
    monkeypatch.setattr(atomic, "STARTED", time.time())  # a rerun starts after the kill
    small, kw = subset(digits, 30, 10), dict(batch_size=16, chunk_rows=16, workers=0, progress=False)
    resumed = read_features(embed_dataset(tmp_path / "b", small, encoders["tiny-dinov2"], **kw))
    whole = read_features(embed_dataset(tmp_path / "a", small, encoders["tiny-dinov2"], **kw))
    assert resumed.attrs == whole.attrs
    assert np.array_equal(resumed.train.embeddings, whole.train.embeddings)
    assert np.array_equal(resumed.test.labels, whole.test.labels)
    assert [p.name for p in resumed.path.parent.iterdir()] == ["tiny-dinov2.zarr"]


def test_stores_refuse_an_encoder_with_the_other_activation(tmp_path, digits, encoders):
    import dataclasses

    small = subset(digits, 20, 10)
    enc = encoders["tiny-clip"]
    kw = dict(batch_size=16, chunk_rows=16, workers=0, progress=False)
    embed_dataset(tmp_path, small, enc, **kw)
    other = dataclasses.replace(enc, activation="quick_gelu")
    with pytest.raises(StoreError, match=r"tiny-clip.zarr: was started with a different 'activation' "
                                         r"\('gelu', now 'quick_gelu'\); delete it to re-embed"):
        embed_dataset(tmp_path, small, other, **kw)
    with pytest.raises(CCMAError, match="image features come from activation='gelu' but the text tower is "
                                        "activation='quick_gelu'"):
        build_prototypes(tmp_path, "digits", other)


# ------------------------------------------------------------------ offline

def test_real_weights_offline_fail_in_one_line(tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for backbone in ("clip-vit-l-14", "dinov2-large"):
        code = main(["embed", "--data-dir", str(tmp_path), "--dataset", "digits", "--backbone", backbone,
                     "--device", "cpu"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1
        assert f"pre-fetch them on a machine with internet with 'ccma fetch-weights --backbone {backbone}'" in err
    assert main(["fetch-weights", "--backbone", "dinov2-small"]) == 2
    assert capsys.readouterr().err == "ccma fetch-weights: error: HF_HUB_OFFLINE=1 is set: unset it to download weights\n"
    assert main(["fetch-weights", "--backbone", "tiny-clip"]) == 0
    assert "nothing to fetch" in capsys.readouterr().out


# ------------------------------------------------------------------ prototypes as a function

def test_class_prototypes_by_hand():
    vectors = {"a x": [3.0, 4.0], "b x": [0.0, 2.0], "a y": [1.0, 0.0], "b y": [1.0, 1.0]}
    protos = class_prototypes(lambda prompts: np.array([vectors[p] for p in prompts]), ["x", "y"],
                              ["a {}", "b {}"], batch_size=3)
    x = np.array([0.6, 0.8]) + np.array([0.0, 1.0])
    y = np.array([1.0, 0.0]) + np.array([1.0, 1.0]) / np.sqrt(2)
    assert np.allclose(protos, [x / np.linalg.norm(x), y / np.linalg.norm(y)])
    assert protos.dtype == np.float32


def test_templates_must_hold_one_slot():
    assert check_templates(["a {}."]) == ["a {}."]
    for bad in (["no slot"], ["{} and {}"], ["{0} x"], []):
        with pytest.raises(CCMAError):
            check_templates(bad)


def test_prototypes_need_a_text_tower_and_the_same_model(digits_dir, tmp_path, capsys):
    assert main(["prototypes", "--data-dir", str(digits_dir), "--dataset", "digits",
                 "--backbone", "tiny-dinov2"]) == 2
    assert "has no text tower" in capsys.readouterr().err
    assert main(["prototypes", "--data-dir", str(tmp_path), "--dataset", "digits", "--backbone", "tiny-clip"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_l2_normalize_rows():
    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert np.allclose(x, [[0.6, 0.8], [0.0, 0.0]]) and x.dtype == np.float32
