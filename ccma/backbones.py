"""The backbones a feature store can be named after, declared without importing torch (so
that ``--help`` and argument errors answer at once); ``ccma.embed`` builds and runs them.

The teacher goes through open_clip (default ``clip-vit-l-14``: ``ViT-L-14`` / ``openai``),
the student through transformers (default ``dinov2-large``). ``tiny-clip`` and ``tiny-dinov2``
are the same architectures built from tiny configs, randomly initialised with a fixed seed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import CCMAError

TINY_CLIP_CONFIG = Path(__file__).parent / "data" / "open_clip" / "ccma-tiny-clip.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Backbone:
    """A frozen image encoder; ``name`` is its feature store's name."""

    name: str
    library: str                  # "open_clip" (teacher: image + text) or "transformers"
    model: str                    # open_clip model name or Hugging Face repo id
    pretrained: str | None = None  # open_clip pretrained tag
    tiny: bool = False            # built from a config, randomly initialised with ``seed``
    seed: int = 0

    @property
    def has_text(self) -> bool:
        return self.library == "open_clip"

    def cli_args(self) -> str:
        """The options that name this backbone on the command line."""
        if BACKBONES.get(self.name) == self:
            return f"--backbone {self.name}"
        if self.has_text:
            return f"--backbone {self.name} --open-clip-model {self.model} --pretrained {self.pretrained}"
        return f"--backbone {self.name} --hf-model {self.model}"

    def describe(self) -> str:
        if self.tiny:
            return f"{self.library} {self.model} (random init, seed {self.seed})"
        return f"open_clip {self.model}/{self.pretrained}" if self.has_text else f"transformers {self.model}"


def _clip(name, model, tag):
    return Backbone(name, "open_clip", model, tag)


def _dinov2(size):
    return Backbone(f"dinov2-{size}", "transformers", f"facebook/dinov2-{size}")


BACKBONES: dict[str, Backbone] = {b.name: b for b in [
    _clip("clip-vit-l-14", "ViT-L-14", "openai"),
    _clip("clip-vit-l-14-336", "ViT-L-14-336", "openai"),
    _clip("clip-vit-b-16", "ViT-B-16", "openai"),
    _clip("clip-vit-b-32", "ViT-B-32", "openai"),
    _clip("clip-vit-h-14", "ViT-H-14", "laion2b_s32b_b79k"),
    _clip("clip-vit-g-14", "ViT-g-14", "laion2b_s34b_b88k"),   # the authors' config (docs/method.md §12)
    _clip("clip-vit-bigg-14", "ViT-bigG-14", "laion2b_s39b_b160k"),
    _dinov2("small"), _dinov2("base"), _dinov2("large"), _dinov2("giant"),
    Backbone("tiny-clip", "open_clip", TINY_CLIP_CONFIG.stem, tiny=True),
    Backbone("tiny-dinov2", "transformers", "Dinov2Config(tiny)", tiny=True),
]}


def resolve_backbone(name: str, open_clip_model: str | None = None, pretrained: str | None = None,
                     hf_model: str | None = None) -> Backbone:
    """The registered backbone ``name``, or a custom one stored under ``name``: any open_clip
    model + pretrained tag (``open_clip_model``, ``pretrained``) or DINOv2 checkpoint on the
    Hugging Face hub (``hf_model``, e.g. ``facebook/dinov2-base``)."""
    if not NAME_RE.match(name):
        raise CCMAError(f"--backbone: {name!r} is not a valid store name (letters, digits, . _ -)")
    if open_clip_model and hf_model:
        raise CCMAError("--open-clip-model and --hf-model: give one of them, not both")
    if open_clip_model:
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(open_clip_model)
        if pretrained not in tags:
            raise CCMAError(f"--pretrained: {pretrained!r} is not a tag of open_clip model "
                            f"{open_clip_model!r} (known: {', '.join(tags) or 'none'})")
        custom = Backbone(name, "open_clip", open_clip_model, pretrained)
    elif hf_model:
        custom = Backbone(name, "transformers", hf_model)
    else:
        if pretrained:
            raise CCMAError("--pretrained: only together with --open-clip-model")
        if name not in BACKBONES:
            raise CCMAError(f"--backbone: unknown backbone {name!r}; choose from {', '.join(BACKBONES)}, "
                            "or name a custom one with --open-clip-model/--pretrained or --hf-model")
        return BACKBONES[name]
    if name in BACKBONES and BACKBONES[name] != custom:
        raise CCMAError(f"--backbone: {name!r} is the registered {BACKBONES[name].describe()}; "
                        "store a custom model under another name")
    return custom


def default_workers() -> int:
    """DataLoader workers: one per CPU core the job may use, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))
