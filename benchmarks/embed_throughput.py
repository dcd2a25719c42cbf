"""Embedding throughput: images per second per backbone and batch size.

Runs ``ccma.embed.iter_embeddings`` (the loop ``ccma embed`` uses: DataLoader workers decode
and preprocess, the model runs under the device's autocast, rows are L2-normalised) over
synthetic RGB images, and separately times the forward pass alone on already preprocessed
tensors, so one sees whether the data pipeline or the model is the bottleneck.

    # CPU, offline, the tiny random models:
    python benchmarks/embed_throughput.py
    # a GPU node with the real weights cached (ccma fetch-weights):
    python benchmarks/embed_throughput.py --backbones clip-vit-l-14 dinov2-large \\
        --batch-sizes 64 128 256 512 --images 4096 --workers 8

Prints one row per (backbone, batch size); ``--csv FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time

import numpy as np
import torch

from ccma.datasets.base import ArrayImages
from ccma.embed import default_workers, iter_embeddings, load_backbone, precision, resolve_backbone
from ccma.geometry import pick_device

FIELDS = ["backbone", "device", "precision", "batch_size", "workers", "images", "pipeline_img_per_s",
          "forward_img_per_s"]


def synthetic_images(n: int, size: int, seed: int = 0) -> ArrayImages:
    """n random RGB images of size x size (what a loader hands to preprocessing)."""
    rng = np.random.default_rng(seed)
    return ArrayImages(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), [str(i) for i in range(n)])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pipeline_rate(images, encoder, batch_size: int, workers: int) -> float:
    """Images per second through iter_embeddings; the first batch (start-up) is not counted."""
    batches = [list(range(s, min(s + batch_size, len(images)))) for s in range(0, len(images), batch_size)]
    counted, start = 0, None
    for rows, _ in iter_embeddings(images, encoder, batches, workers):
        if start is None:
            _sync(encoder.device)
            start = time.perf_counter()
            continue
        counted += len(rows)
    _sync(encoder.device)
    return counted / (time.perf_counter() - start) if counted else float("nan")


def forward_rate(pixels: torch.Tensor, encoder, batch_size: int, repeats: int) -> float:
    """Images per second of encode_images alone on preprocessed pixels (after one warm-up)."""
    batch = pixels[:batch_size].repeat((batch_size + len(pixels) - 1) // len(pixels), 1, 1, 1)[:batch_size]
    if encoder.device.type == "cuda":
        batch = batch.pin_memory()
    encoder.encode_images(batch)
    _sync(encoder.device)
    start = time.perf_counter()
    for _ in range(repeats):
        encoder.encode_images(batch)
    _sync(encoder.device)
    return repeats * batch_size / (time.perf_counter() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["tiny-clip", "tiny-dinov2"])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    p.add_argument("--images", type=int, default=1024, help="synthetic images per measurement")
    p.add_argument("--image-size", type=int, default=256, help="side of the synthetic images")
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--forward-repeats", type=int, default=5)
    p.add_argument("--device", default="auto")
    p.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    args = p.parse_args(argv)

    device = pick_device(args.device)
    images = synthetic_images(args.images, args.image_size)
    rows = []
    print("  ".join(f"{f:>18}" for f in FIELDS))
    for name in args.backbones:
        encoder = load_backbone(resolve_backbone(name), device)
        pixels = torch.stack([encoder.preprocess(images[i]) for i in range(min(64, len(images)))])
        for bs in args.batch_sizes:
            row = dict(backbone=name, device=str(device), precision=precision(device), batch_size=bs,
                       workers=args.workers, images=args.images,
                       pipeline_img_per_s=round(pipeline_rate(images, encoder, bs, args.workers), 1),
                       forward_img_per_s=round(forward_rate(pixels, encoder, bs, args.forward_repeats), 1))
            rows.append(row)
            print("  ".join(f"{row[f]!s:>18}" for f in FIELDS), flush=True)
        del encoder
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.DictWriter(fh, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
