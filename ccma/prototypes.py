"""Text prototypes of the CLIP teacher and ``ccma prototypes`` (docs/method.md §2, §13).

t_c: encode every template filled with class c's name, L2-normalise each prompt embedding,
average them, L2-normalise again. The prototype store
``prototypes/{dataset}/{backbone}.zarr`` carries the class names (label-index order, taken
from the teacher's feature store, so they match its labels), the templates, the backbone
and the teacher's zero-shot accuracy on the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .errors import CCMAError
from .features import feature_path, prototype_path, read_features, write_prototypes
from .teacher import zero_shot_accuracy

TEMPLATES = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a blurry photo of a {}.",
    "a photo of one {}.",
    "a close-up photo of a {}.",
    "a rendition of a {}.",
    "a bright photo of a {}.",
    "a low resolution photo of a {}.",
    "a cropped photo of a {}.",
    "a clean photo of a {}.",
)
TEXT_BATCH = 256
# what makes the text tower the same model as the image tower of the teacher's feature store
MODEL_KEYS = ("library", "model", "pretrained", "activation", "init")


def check_templates(templates, where: str = "templates") -> list[str]:
    templates = list(templates)
    if not templates:
        raise CCMAError(f"{where}: no templates")
    for t in templates:
        if t.count("{}") != 1 or t.replace("{}", "").count("{") or t.replace("{}", "").count("}"):
            raise CCMAError(f"{where}: template {t!r} must contain '{{}}' exactly once (and no other braces)")
    return templates


def read_templates(path) -> list[str]:
    """One template per non-empty line."""
    path = Path(path)
    if not path.exists():
        raise CCMAError(f"--templates: {path} does not exist")
    return check_templates([line.strip() for line in path.read_text(encoding="utf-8").splitlines()
                            if line.strip()], str(path))


def class_prototypes(encode_text: Callable[[list[str]], np.ndarray], classnames: list[str],
                     templates, batch_size: int = TEXT_BATCH) -> np.ndarray:
    """(K, d) float32 prototypes, rows L2-normalised.

    encode_text: list of n prompts -> (n, d) embeddings. Prompt embeddings are normalised
    one by one, averaged over the T templates of each class, and normalised again.
    """
    templates = check_templates(templates)
    prompts = [t.format(name) for name in classnames for t in templates]
    emb = np.concatenate([np.asarray(encode_text(prompts[s:s + batch_size]), dtype=np.float32)
                          for s in range(0, len(prompts), batch_size)])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    protos = emb.reshape(len(classnames), len(templates), -1).mean(axis=1)
    return (protos / np.linalg.norm(protos, axis=1, keepdims=True)).astype(np.float32)


def build_prototypes(data_dir, dataset: str, encoder, templates=TEMPLATES) -> tuple[Path, float]:
    """Write the prototype store of ``dataset`` for the teacher ``encoder`` (an
    ``ccma.embed.Encoder`` with a text tower); returns its path and the zero-shot test
    accuracy. Needs the teacher's feature store of the same dataset."""
    name = encoder.backbone.name
    store = read_features(feature_path(data_dir, dataset, name))
    mine = encoder.attrs()
    for key in MODEL_KEYS:
        if store.attrs.get(key) != mine[key]:
            raise CCMAError(f"{store.path}: image features come from {key}={store.attrs.get(key)!r} but "
                            f"the text tower is {key}={mine[key]!r}; embed and prototypes must use one model "
                            "(delete the feature store and embed again)")
    names = store.attrs.get("classnames")
    if not isinstance(names, list) or len(names) != store.n_classes:
        raise CCMAError(f"{store.path}: no class names in its attributes (not written by 'ccma embed')")
    protos = class_prototypes(encoder.encode_texts, names, templates)
    accuracy = zero_shot_accuracy(store.test.embeddings, store.test.labels, protos)
    out = prototype_path(data_dir, dataset, name)
    write_prototypes(out, protos, classnames=names, templates=list(templates), backbone=name,
                     attrs={"dataset": dataset, "zero_shot_test_accuracy": accuracy,
                            **{k: mine[k] for k in (*MODEL_KEYS, "precision", "versions")}})
    return out, accuracy
