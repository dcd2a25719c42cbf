"""Frozen backbones and ``ccma embed`` (docs/method.md §2, §13).

A ``Backbone`` is what a feature store is named after: the teacher through open_clip
(default ``clip-vit-l-14``: ``ViT-L-14`` / ``openai``) and the student through transformers
(default ``dinov2-large``: ``facebook/dinov2-large``, pooled CLS output). Any open_clip
model + pretrained tag or DINOv2 checkpoint can be named by parameter. An open_clip model
is built with the activation its weights were trained with (QuickGELU for OpenAI's, see
``activation_for``), which its stores record. ``tiny-clip`` and ``tiny-dinov2`` are the
same architectures built from tiny configs and initialised at random with a fixed seed:
tests and the offline demo run them through exactly the code path of the real models; only
the construction of the model differs.

``embed_dataset`` writes ``features/{dataset}/{backbone}.zarr`` chunk by chunk through
``ccma.features.FeatureStoreWriter``: a batch never straddles two chunks, so every chunk is
computed from the same batches whether or not the job was interrupted, and a rerun
continues with the chunks still missing and ends with a store identical to an
uninterrupted run's (on the same machine and library versions, which the store records and
a resume checks). Rows are L2-normalised in float32, then stored (float16 by default).
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .backbones import (BACKBONES, NAME_RE, TINY_CLIP_CONFIG, Backbone,  # noqa: F401 (re-exported)
                        default_workers, resolve_backbone)
from .errors import CCMAError, StoreError
from .features import SPLITS, FeatureStoreWriter, feature_path

# DINOv2's processor settings (facebook/dinov2-*: shortest edge 256, centre crop 224,
# bicubic, ImageNet mean/std) scaled to the tiny model's 32-pixel input
TINY_DINOV2 = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, image_size=32, patch_size=8)
TINY_DINOV2_PROCESSOR = dict(do_resize=True, size={"shortest_edge": 36}, resample=3,
                             do_center_crop=True, crop_size={"height": 32, "width": 32},
                             do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                             image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225],
                             do_convert_rgb=True)
HF_FILES = ["*.json", "*.safetensors"]  # config, processor config, weights


# ------------------------------------------------------------------ model construction

def library_versions() -> dict:
    import PIL
    import open_clip
    import torchvision
    import transformers

    from . import __version__

    return {"ccma": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "open_clip": open_clip.__version__, "transformers": transformers.__version__,
            "pillow": PIL.__version__}


def precision(device: torch.device) -> str:
    """Autocast dtype: bfloat16 on CUDA where supported, else float16; float32 on CPU."""
    if device.type != "cuda":
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


@contextlib.contextmanager
def _seeded(seed: int):
    """Random initialisation from ``seed`` without touching the caller's global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _offline_error(backbone: Backbone, exc: Exception) -> CCMAError:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        why = f"HF_HUB_OFFLINE=1: {type(exc).__name__}"
    else:
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return CCMAError(f"backbone {backbone.name}: the weights of {backbone.describe()} are not in the "
                     f"local cache and cannot be downloaded ({why}); pre-fetch them "
                     f"on a machine with internet with 'ccma fetch-weights {backbone.cli_args()}' "
                     "into the same HF_HOME (README, 'Real datasets and features')")


def fetch_weights(backbone: Backbone) -> str:
    """Fill the Hugging Face / open_clip caches with everything ``load_backbone`` reads;
    returns where the weights are. Raises a one-line CCMAError when they cannot be fetched."""
    if backbone.tiny:
        return "nothing to fetch (built from a config)"
    try:
        if backbone.has_text:
            import open_clip

            cfg = open_clip.get_pretrained_cfg(backbone.model, backbone.pretrained)
            path = open_clip.download_pretrained(cfg)
            open_clip.get_tokenizer(backbone.model)  # hub-hosted tokenizers are fetched too
            return str(path)
        from huggingface_hub import snapshot_download

        # the config alone first: a repository of another kind stops before its weights download
        check_dinov2(backbone, snapshot_download(backbone.model, allow_patterns=["config.json"]))
        return snapshot_download(backbone.model, allow_patterns=HF_FILES)
    except OSError as exc:
        raise _offline_error(backbone, exc) from None


def check_dinov2(backbone: Backbone, folder) -> None:
    """Stop unless ``folder`` holds a DINOv2 ``config.json``: the loader builds ``Dinov2Model``."""
    config = Path(folder) / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    if model_type != "dinov2":
        raise CCMAError(f"--hf-model: {backbone.model} is a {model_type!r} model, not DINOv2 (model_type "
                        "'dinov2'); name a DINOv2 checkpoint such as facebook/dinov2-base")


def activation_for(model: str, pretrained: str | None) -> str:
    """``"quick_gelu"`` or ``"gelu"``: the activation open_clip ``model`` must be built with
    for the weights tagged ``pretrained`` (None: random init, the config's own activation).

    OpenAI's CLIP weights (and some later ones) were trained with QuickGELU. open_clip >= 2.29
    says so in the tag's pretrained config, yet builds the model config's GELU and only
    warns; older versions record nothing there, build every ``openai`` tag with QuickGELU
    through a separate loader, and list the other QuickGELU weights under the model's
    ``-quickgelu`` config as well.
    """
    import open_clip

    if (open_clip.get_model_config(model) or {}).get("quick_gelu"):
        return "quick_gelu"
    if pretrained is None:
        return "gelu"
    quick = (open_clip.get_pretrained_cfg(model, pretrained).get("quick_gelu")
             or pretrained == "openai"
             or pretrained in open_clip.list_pretrained_tags_by_model(f"{model}-quickgelu"))
    return "quick_gelu" if quick else "gelu"


class HFPreprocess:
    """A transformers image processor as a per-image transform: PIL image -> (3, H, W)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, image) -> torch.Tensor:
        return self.processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return self.processor.to_json_string()


@dataclass
class Encoder:
    """A loaded backbone: ``preprocess`` (PIL image -> tensor) and the forward passes."""

    backbone: Backbone
    module: torch.nn.Module
    preprocess: Callable
    dim: int
    device: torch.device
    tokenizer: Callable | None = None
    activation: str | None = None   # open_clip models: "quick_gelu" or "gelu" (``activation_for``)

    def _autocast(self):
        amp = precision(self.device)
        if amp == "float32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=getattr(torch, amp))

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> np.ndarray:
        """pixels (B, 3, H, W) as ``preprocess`` makes them -> (B, d) float32, not normalised."""
        pixels = pixels.to(self.device, non_blocking=True)
        with self._autocast():
            if self.backbone.has_text:
                out = self.module.encode_image(pixels)
            else:
                out = self.module(pixel_values=pixels).pooler_output  # layer-normed CLS token
        return out.float().cpu().numpy()

    @torch.inference_mode()
    def encode_texts(self, prompts: list[str]) -> np.ndarray:
        """(n,) prompts -> (n, d) float32 text embeddings, not normalised (teachers only)."""
        if self.tokenizer is None:
            raise CCMAError(f"backbone {self.backbone.name} has no text tower; "
                            "prototypes need a CLIP teacher")
        tokens = self.tokenizer(prompts).to(self.device)
        with self._autocast():
            out = self.module.encode_text(tokens)
        return out.float().cpu().numpy()

    def attrs(self) -> dict:
        """What the store records about how its rows were computed."""
        return {"library": self.backbone.library, "model": self.backbone.model,
                "pretrained": self.backbone.pretrained, "activation": self.activation,
                "init": f"random, seed {self.backbone.seed}" if self.backbone.tiny else "pretrained",
                "preprocess": repr(self.preprocess), "precision": precision(self.device),
                "versions": library_versions()}


def load_backbone(backbone: Backbone, device: torch.device) -> Encoder:
    """Build ``backbone`` on ``device`` in eval mode, real weights from the local cache (or
    the hub when online)."""
    if backbone.has_text:
        import open_clip

        if backbone.tiny:
            if backbone.model not in open_clip.list_models():
                open_clip.add_model_config(TINY_CLIP_CONFIG)
        else:
            fetch_weights(backbone)  # resolves the cache first, so offline fails in one line
        activation = activation_for(backbone.model, backbone.pretrained)
        with _seeded(backbone.seed):  # the random init of tiny models; pretrained ones overwrite it
            module, _, preprocess = open_clip.create_model_and_transforms(
                backbone.model, pretrained=backbone.pretrained, force_quick_gelu=activation == "quick_gelu")
        dim = open_clip.get_model_config(backbone.model)["embed_dim"]
        tokenizer = open_clip.get_tokenizer(backbone.model)
    else:
        from transformers import AutoImageProcessor, BitImageProcessor, Dinov2Config, Dinov2Model

        if backbone.tiny:
            with _seeded(backbone.seed):
                module = Dinov2Model(Dinov2Config(**TINY_DINOV2))
            processor = BitImageProcessor(**TINY_DINOV2_PROCESSOR)
        else:
            path = fetch_weights(backbone)
            module = Dinov2Model.from_pretrained(path)
            processor = AutoImageProcessor.from_pretrained(path)
        preprocess, dim, tokenizer, activation = HFPreprocess(processor), module.config.hidden_size, None, None
    return Encoder(backbone, module.to(device).eval(), preprocess, int(dim), device, tokenizer, activation)


# ------------------------------------------------------------------ the embedding loop

def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows of x (n, d) scaled to unit norm (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float32).tiny)


class _Preprocessed(torch.utils.data.Dataset):
    def __init__(self, images, preprocess):
        self.images, self.preprocess = images, preprocess

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.preprocess(self.images[i])


def iter_embeddings(images, encoder: Encoder, batches: list[list[int]], workers: int = 0
                    ) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield (rows, embeddings (len(rows), d) float32, L2-normalised) for each batch of rows
    of ``images``, in order; images are decoded and preprocessed by ``workers`` processes."""
    if not batches:
        return
    loader = torch.utils.data.DataLoader(
        _Preprocessed(images, encoder.preprocess), batch_sampler=batches, num_workers=workers,
        pin_memory=encoder.device.type == "cuda", prefetch_factor=4 if workers else None)
    for rows, pixels in zip(batches, loader):
        yield rows, l2_normalize(encoder.encode_images(pixels))


def chunk_batches(writer: FeatureStoreWriter, split: str, chunks: list[int],
                  batch_size: int) -> list[list[int]]:
    """Rows of ``chunks`` in batches of at most ``batch_size`` that never cross a chunk."""
    out = []
    for chunk in chunks:
        rows = writer.chunk_slice(split, chunk)
        out += [list(range(s, min(s + batch_size, rows.stop)))
                for s in range(rows.start, rows.stop, batch_size)]
    return out


# Attributes a resumed job must share with the one that started the store
RESUME_KEYS = ("library", "model", "pretrained", "activation", "init", "preprocess", "precision",
               "versions", "batch_size", "classnames", "row_fingerprints")


def embed_dataset(data_dir, data, encoder: Encoder, *, batch_size: int = 256, chunk_rows: int = 4096,
                  workers: int = 0, dtype: str = "float16", progress: bool = True) -> Path:
    """Embed the train and test images of ``data`` (a ``LoadedDataset``) into
    ``features/{dataset}/{backbone}.zarr``, resuming an interrupted store; returns its path."""
    from tqdm.auto import tqdm

    if batch_size < 1 or chunk_rows < 1 or workers < 0:
        raise CCMAError("--batch-size and --chunk-rows must be >= 1 and --workers >= 0")
    path = feature_path(data_dir, data.name, encoder.backbone.name)
    attrs = json.loads(json.dumps({   # as zarr will give them back (tuples -> lists)
        **encoder.attrs(), "batch_size": batch_size, "classnames": data.classnames,
        "split_rule": data.split_rule,
        "row_fingerprints": {s: getattr(data, s).fingerprint() for s in SPLITS},
    }))
    writer = FeatureStoreWriter(path, dataset=data.name, backbone=encoder.backbone.name,
                                n_train=len(data.train.labels), n_test=len(data.test.labels),
                                dim=encoder.dim, n_classes=data.n_classes, dtype=dtype,
                                chunk_rows=chunk_rows, attrs=attrs)
    for key in RESUME_KEYS:
        if writer.group.attrs.get(key) != attrs[key]:
            raise StoreError(path, f"was started with a different '{key}' ({writer.group.attrs.get(key)!r}, "
                                   f"now {attrs[key]!r}); delete it to re-embed")
    todo = {s: sorted(set(range(writer.n_chunks(s))) - writer.done_chunks(s)) for s in SPLITS}
    spans = [writer.chunk_slice(s, c) for s in SPLITS for c in todo[s]]
    total = sum(span.stop - span.start for span in spans)
    tty = sys.stderr.isatty()
    with tqdm(total=total, unit="img", unit_scale=True, disable=not progress, mininterval=0.5 if tty else 30,
              desc=f"{data.name}/{encoder.backbone.name}") as bar:
        for split in SPLITS:
            part = getattr(data, split)
            buffer, filled = None, 0
            for rows, emb in iter_embeddings(part.images, encoder, chunk_batches(writer, split, todo[split],
                                                                                   batch_size), workers):
                chunk = rows[0] // chunk_rows
                span = writer.chunk_slice(split, chunk)
                if buffer is None:
                    buffer, filled = np.empty((span.stop - span.start, encoder.dim), np.float32), 0
                buffer[rows[0] - span.start:rows[-1] + 1 - span.start] = emb
                filled += len(rows)
                if filled == len(buffer):
                    writer.write_chunk(split, chunk, buffer.astype(dtype), part.labels[span])
                    buffer = None
                bar.update(len(rows))
    writer.finish()
    return path


