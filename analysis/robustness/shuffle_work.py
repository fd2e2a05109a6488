"""Patch shuffle: top-1 when the image's cells are permuted (reference §3.8, "Patch shuffle").

The image is split into h x w cells (cell = H/h x W/w pixels; the reference's grids 2x2, 2x4, 4x4,
4x8, 8x8, 14x14, 16x16 -> 4 ... 256 cells at 224 px) and the cells are put back in a random order:
one permutation per batch, shared by its images. Grids are strings `HxW` (rows x columns). The
unshuffled top-1 is reported as `clean_top1` (grid 1x1). Data pass once; every grid on each batch.

    python -m analysis.robustness.shuffle classifier=classifier.pth data_path=/data/imagenet/val
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from evalkit import eval_transform
from plumbing import ConfigError, autocast

from ..common import on_device
from .common import (
    accuracy,
    batches,
    classifier_info,
    correct,
    eval_folder,
    image_size,
    make_loader,
    plot_curves,
    subset,
)
from .config import ShuffleConfig


def parse_grid(text: str) -> tuple[int, int]:
    """`"4x8"` -> (4, 8) (rows, columns)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"grid {text!r} is not of the form HxW (e.g. 4x8)") from None
    if h < 1 or w < 1:
        raise ConfigError(f"grid {text!r}: both sides must be >= 1")
    return h, w


def shuffle_cells(images: Tensor, grid: tuple[int, int], perm: Tensor) -> Tensor:
    """Move cell `perm[j]` of an h x w grid to position j (row-major), for every image of the batch.

    images (B, C, H, W) with H % h == W % w == 0; perm a permutation of h*w cells.
    """
    B, C, H, W = images.shape
    h, w = grid
    ch, cw = H // h, W // w
    cells = images.reshape(B, C, h, ch, w, cw).permute(0, 2, 4, 1, 3, 5).reshape(B, h * w, C, ch, cw)
    cells = cells[:, perm.to(images.device)]  # (B, h*w, C, ch, cw), new order
    return cells.reshape(B, h, w, C, ch, cw).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H, W)


def run_shuffle(classifier: nn.Module, cfg: ShuffleConfig, info: dict | None = None) -> dict:
    """Top-1 for every grid of `cfg.grids` (one random permutation of cells per batch)."""
    info = classifier_info(classifier, info)
    size = image_size(cfg, info)
    grids = [parse_grid(g) for g in cfg.grids]
    bad = [g for g, (h, w) in zip(cfg.grids, grids, strict=True) if size % h or size % w]
    if bad:
        raise ConfigError(f"grids {bad} do not divide image_size {size}")
    ds = subset(eval_folder(cfg.data_path, eval_transform(size), info), cfg.max_images, cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    hits, n = [0] * (len(grids) + 1), 0
    with on_device([classifier], cfg.device) as dev:
        for x, y in batches(make_loader(ds, cfg, shuffle=True), dev, "patch shuffle", cfg.progress):
            n += len(y)
            with autocast(dev, cfg.precision):
                hits[0] += correct(classifier(x), y)
                for i, (h, w) in enumerate(grids, start=1):
                    perm = torch.randperm(h * w, generator=gen)
                    hits[i] += correct(classifier(shuffle_cells(x, (h, w), perm)), y)
    rows = [
        {"grid": g, "cells": h * w, "top1": accuracy(k, n)}
        for g, (h, w), k in zip(cfg.grids, grids, hits[1:], strict=True)
    ]
    out = {"num_images": n, "image_size": size, "clean_top1": accuracy(hits[0], n), "shuffle": rows}
    labels = ["1x1", *cfg.grids]
    curve = {"patch shuffle": (range(len(labels)), [out["clean_top1"], *(r["top1"] for r in rows)])}
    path = Path(cfg.output_dir) / "shuffle.png"
    out["figure"] = plot_curves(path, curve, "grid (rows x columns)", "top-1 %", "patch shuffle", labels)
    return out
