"""Occlusion: top-1 under random and attention-guided patch drop (reference §3.8, "Occlusion").

Random drop: the image is split into a grid of `cell_size`-pixel cells (14 x 14 cells of 16 px at
224 px); for k = 0..9 the classifier sees images with floor(k * N / 10) cells dropped (information
loss 0-90 %). One random cell subset per batch (the same for all images of the batch); dropped
cells are set to 0 in normalised space, i.e. to the dataset's mean colour.

Salient / non-salient drop: per image the [CLS] -> patch attention of the last block (mean over
heads, or head `attention_head`) is thresholded at mass lambda exactly as the attention-map tool
(`analysis.common.mass_threshold`: the smallest set of patches holding lambda of the mass). `salient`
removes that set (the reference's "best"), `non_salient` removes the rest ("worst"). The reference
borrows DINO ViT-S/16's head 1; here the evaluated model's own backbone is used, or the backbone in
`attention_backbone` when given (a ViT: a Swin has no [CLS] attention, so a Swin classifier needs a
ViT `attention_backbone` or `salient=false`). Reported: top-1 and the mean fraction of removed pixels
per lambda.
Data pass once; every setting is evaluated on each batch.

    python -m analysis.robustness.occlusion classifier=linear_head_best.pth pretrained=backbone.pth \
        data_path=/data/imagenet/val output_dir=out/occlusion
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor, nn

from evalkit import eval_transform
from plumbing import ConfigError, autocast
from pretrain import load_backbone, mask_grid

from ..common import cls_attention, mass_threshold, on_device, require_cls_attention
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
from .config import OcclusionConfig

SALIENT_MODES = ("salient", "non_salient")


def info_loss_schedule(num_cells: int, steps: int = 10) -> list[int]:
    """Cells dropped at information loss k/steps, k = 0..steps-1: floor(k * num_cells / steps)."""
    return [math.floor(k * num_cells / steps) for k in range(steps)]


def cell_mask(n_drop: int, grid: tuple[int, int], generator: torch.Generator) -> Tensor:
    """(gh, gw) bool, True on `n_drop` cells chosen uniformly at random."""
    gh, gw = grid
    mask = torch.zeros(gh * gw, dtype=torch.bool)
    mask[torch.randperm(gh * gw, generator=generator)[:n_drop]] = True
    return mask.view(gh, gw)


def drop(images: Tensor, mask: Tensor) -> Tensor:
    """Zero (in normalised space) the pixels of cells where `mask` is True.

    images (B, 3, H, W); mask (gh, gw) for the whole batch or (B, gh, gw) per image; H, W multiples
    of the grid.
    """
    H, W = images.shape[-2:]
    gh, gw = mask.shape[-2:]
    pix = mask.repeat_interleave(H // gh, dim=-2).repeat_interleave(W // gw, dim=-1)  # (.., H, W)
    keep = (~pix).to(images.dtype).to(images.device)
    return images * (keep.unsqueeze(-3) if keep.dim() == 3 else keep)  # (B, 3, H, W)


def salient_masks(backbone: nn.Module, images: Tensor, lambdas: list[float], head: int = -1) -> Tensor:
    """(L, B, h, w) bool: the patches holding mass lambda of each image's [CLS] attention, per lambda."""
    attn = cls_attention(backbone, images).float()  # (B, heads, h, w)
    amap = attn.mean(1) if head < 0 else attn[:, head]  # (B, h, w)
    B, h, w = amap.shape
    flat = amap.reshape(B, h * w)
    return torch.stack([mass_threshold(flat, lam).view(B, h, w) for lam in lambdas])


def _check(cfg: OcclusionConfig, size: int, cell: int) -> None:
    cfg.check_settings()
    if cell <= 0 or size % cell:
        raise ConfigError(f"image_size {size} must be a multiple of cell_size {cell}")


class _Tally:
    """Hits and removed fractions per setting."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.removed: dict[str, float] = {}
        self.total = 0

    def add(self, name: str, hits: int, removed: float) -> None:
        """Count a batch of one setting: its hits and its summed removed fractions."""
        self.hits[name] = self.hits.get(name, 0) + hits
        self.removed[name] = self.removed.get(name, 0.0) + removed


def _evaluate(model: nn.Module, attn_backbone: nn.Module, loader, cfg: OcclusionConfig, grid, schedule, dev) -> _Tally:
    gen = torch.Generator().manual_seed(cfg.seed)
    tally = _Tally()
    for x, y in batches(loader, dev, "occlusion", cfg.progress):
        B = len(y)
        tally.total += B
        with autocast(dev, cfg.precision):
            for k, n_drop in enumerate(schedule if cfg.random_drop else []):
                mask = cell_mask(n_drop, grid, gen).to(dev)
                tally.add(f"random/{k}", correct(model(drop(x, mask)), y), B * n_drop / (grid[0] * grid[1]))
            if cfg.salient:
                masks = salient_masks(attn_backbone, x, cfg.lambdas, cfg.attention_head)  # (L, B, h, w)
                for lam, m in zip(cfg.lambdas, masks, strict=True):
                    for mode, removed in (("salient", m), ("non_salient", ~m)):
                        hits = correct(model(drop(x, removed)), y)
                        tally.add(f"{mode}/{lam}", hits, float(removed.float().mean(dim=(1, 2)).sum()))
    return tally


def _results(tally: _Tally, cfg: OcclusionConfig, grid, schedule) -> dict:
    n, cells = tally.total, grid[0] * grid[1]
    out: dict = {"num_images": n, "grid": list(grid)}
    if cfg.random_drop:
        out["random_drop"] = [
            {"k": k, "cells_dropped": d, "information_loss": d / cells, "top1": accuracy(tally.hits[f"random/{k}"], n)}
            for k, d in enumerate(schedule)
        ]
        out["clean_top1"] = out["random_drop"][0]["top1"]
    for mode in SALIENT_MODES if cfg.salient else []:
        out[f"{mode}_drop"] = [
            {
                "lambda": lam,
                "top1": accuracy(tally.hits[f"{mode}/{lam}"], n),
                "removed": tally.removed[f"{mode}/{lam}"] / n,
            }
            for lam in cfg.lambdas
        ]
    return out


def _plot(out: dict, cfg: OcclusionConfig) -> str:
    """Top-1 against the fraction of the image removed, for every kind of drop."""
    curves = {}
    if cfg.random_drop:
        rows = out["random_drop"]
        curves["random drop"] = ([r["information_loss"] for r in rows], [r["top1"] for r in rows])
    for mode in SALIENT_MODES if cfg.salient else []:
        rows = sorted(out[f"{mode}_drop"], key=lambda r: r["removed"])
        curves[f"{mode} drop"] = ([r["removed"] for r in rows], [r["top1"] for r in rows])
    path = Path(cfg.output_dir) / "occlusion.png"
    return plot_curves(path, curves, "information loss (fraction of the image dropped)", "top-1 %", "occlusion")


def run_occlusion(classifier: nn.Module, cfg: OcclusionConfig, info: dict | None = None) -> dict:
    """Top-1 vs information loss (random drop) and vs attention mass lambda (salient drop)."""
    info = classifier_info(classifier, info)
    size = image_size(cfg, info)
    attn_backbone = load_backbone(cfg.attention_backbone)[0] if cfg.attention_backbone else classifier.backbone
    cell = cfg.cell_size or mask_grid(classifier.backbone)
    _check(cfg, size, cell)
    if cfg.salient:
        hint = "give attention_backbone=A_VIT_FILE or salient=false"
        require_cls_attention(attn_backbone, "salient-patch drop masks", hint)
        if size % attn_backbone.patch_size:
            raise ConfigError(
                f"image_size {size} must be a multiple of the attention patch size {attn_backbone.patch_size}"
            )
    grid = (size // cell, size // cell)
    schedule = info_loss_schedule(grid[0] * grid[1], cfg.steps)
    ds = subset(eval_folder(cfg.data_path, eval_transform(size), info), cfg.max_images, cfg.seed)
    with on_device([classifier, attn_backbone], cfg.device) as dev:
        tally = _evaluate(classifier, attn_backbone, make_loader(ds, cfg, shuffle=True), cfg, grid, schedule, dev)
    out = _results(tally, cfg, grid, schedule)
    out.update(cell_size_px=cell, image_size=size)
    out["figure"] = _plot(out, cfg)
    return out
