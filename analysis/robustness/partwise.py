"""Part-wise linear probing: linear heads on the mean of the k most (or least) attended patches.

Reference §3.8 ("Part-wise linear probing"): per image, the last block's [CLS] -> patch attention
averaged over heads ranks the patches; the feature is the mean of the last block's tokens at the
top-k (`order=top`) or bottom-k (`order=bottom`) patches, k in {1, 7, 14, 56, 112, 196}. The
reference builds the model with mean pooling, so the tokens are taken before the final LayerNorm
(`final_norm=false`, the default). Each (order, k) trains the linear-probe sweep of
`python -m eval_linear` (reference §3.2: SGD momentum 0.9, lrs scaled by batch / 256, per-epoch
cosine, RandomResizedCrop + flip, best val top-1 over heads and epochs) through the sweep functions
that `pretrain` exports; only the feature function differs. Values of k above the number of patches
are skipped. ViT only: a Swin backbone has no [CLS] attention and stops with one line.

    python -m analysis.robustness.partwise backbone=backbone.pth data_path=/data/imagenet epochs=100
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler

from analysis.common import finish, require_cls_attention
from evalkit import (
    PAPER_LRS,
    BestTracker,
    HeadGrid,
    eval_transform,
    evaluate_heads,
    extract_features,
    frozen,
    image_splits,
    linear_train_transform,
    make_grid,
    make_optimizer,
    run_cli,
    set_epoch_lr,
    train_one_epoch,
)
from pretrain import ConfigError, load_backbone, resolve_device

from .common import plot_curves

log = logging.getLogger(__name__)
ORDERS = ("top", "bottom")


@dataclass
class PartwiseConfig:
    """Part-wise probing; sweep defaults are the linear probe's (45 lrs, 100 epochs, batch 128)."""

    backbone: str = ""  # backbone file (CLI only)
    checkpoint_key: str = "teacher"
    data_path: str = ""  # ImageFolder root with train/ and val/
    output_dir: str = "output/robustness/partwise"
    image_size: int = 224
    ks: list[int] = field(default_factory=lambda: [1, 7, 14, 56, 112, 196])
    orders: list[str] = field(default_factory=lambda: list(ORDERS))
    final_norm: bool = False  # the reference's tokens skip the final LayerNorm
    lrs: list[float] = field(default_factory=lambda: list(PAPER_LRS))
    wds: list[float] = field(default_factory=lambda: [0.0])
    epochs: int = 100
    batch_size: int = 128
    momentum: float = 0.9
    num_workers: int = 8
    device: str = "auto"
    seed: int = 0
    progress: bool = True


def part_features(backbone: nn.Module, images: Tensor, k: int, order: str = "top", final_norm: bool = False) -> Tensor:
    """(B, D): mean of the last block's tokens at the k patches with the highest (lowest) [CLS] attention."""
    attn = backbone.get_last_selfattention(images)[:, :, 0, 1:].mean(dim=1)  # (B, N), mean over heads
    tokens = backbone.get_block_outputs(images, [-1], norm=final_norm)[0][:, 1:]  # (B, N, D)
    idx = attn.topk(k, dim=1, largest=order == "top").indices  # (B, k)
    picked = tokens.gather(1, idx.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))  # (B, k, D)
    return picked.mean(dim=1)


def part_feature_fn(backbone: nn.Module, k: int, order: str, final_norm: bool) -> Callable[[Tensor], Tensor]:
    """images -> (B, D) part features, for the sweep's `features_fn`."""
    if order not in ORDERS:
        raise ConfigError(f"unknown order {order!r}; valid: {', '.join(ORDERS)}")
    return lambda images: part_features(backbone, images, k, order, final_norm)


def _sweep(fn: Callable, dim: int, train_set, val: tuple[Tensor, Tensor], cfg: PartwiseConfig, dev) -> dict:
    """The linear-probe sweep on part features; (B, D) features are the `cls` recipe width of 1 block."""
    torch.manual_seed(cfg.seed)
    grid = make_grid(["cls"], cfg.lrs, cfg.wds)
    heads = HeadGrid(grid, dim, 1, len(train_set.classes)).to(dev)
    optimizer = make_optimizer(heads, cfg.batch_size / 256, cfg.momentum)
    tracker = BestTracker(len(grid))
    for epoch in range(cfg.epochs):
        set_epoch_lr(optimizer, epoch, cfg.epochs)
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        loader = DataLoader(train_set, cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers)
        train_one_epoch(fn, heads, optimizer, loader, dev, cfg.progress)
        tracker.update(evaluate_heads(heads, *val), epoch)
    best = tracker.best
    return {**best, "lr": grid[best["head"]].lr, "wd": grid[best["head"]].wd}


def run(model: nn.Module, cfg: PartwiseConfig, info: dict | None = None) -> dict:
    """Best val top-1 of the sweep for every (order, k); `model` is a backbone or a classifier."""
    backbone = getattr(model, "backbone", model)
    require_cls_attention(backbone, "part-wise features (patches ranked by [CLS] attention)")
    if cfg.epochs < 1 or not cfg.lrs or any(k < 1 for k in cfg.ks):
        raise ConfigError("epochs >= 1, at least one lr and every k >= 1 are required")
    dev = resolve_device(cfg.device)
    n_patches = (cfg.image_size // backbone.patch_size) ** 2
    train_set, val_set = image_splits(
        cfg.data_path, linear_train_transform(cfg.image_size), eval_transform(cfg.image_size)
    )
    rows, skipped = [], [k for k in cfg.ks if k > n_patches]
    with frozen(backbone), torch.random.fork_rng(devices=[]):
        backbone.to(dev)
        for order in cfg.orders:
            for k in (k for k in cfg.ks if k <= n_patches):
                fn = part_feature_fn(backbone, k, order, cfg.final_norm)
                val = extract_features(fn, val_set, cfg.batch_size, cfg.num_workers, dev, None, cfg.progress, "val")
                best = _sweep(fn, backbone.embed_dim, train_set, val, cfg, dev)
                log.info("part-wise %s-%d: top-1 %.2f", order, k, best["top1"])
                rows.append({"order": order, "k": k, **best})
    curves = {
        o: ([r["k"] for r in rows if r["order"] == o], [r["top1"] for r in rows if r["order"] == o]) for o in cfg.orders
    }
    path = Path(cfg.output_dir) / "partwise.png"
    figure = plot_curves(path, curves, "k patches (by [CLS] attention)", "best val top-1 %", "part-wise linear probing")
    out = {"results": rows, "skipped_ks": skipped, "num_patches": n_patches, "epochs": cfg.epochs, "figure": figure}
    return finish(cfg, out)


def main(argv: list[str] | None = None) -> int:
    """`python -m analysis.robustness.partwise backbone=FILE data_path=ROOT ...`; bad input exits 2."""

    def body(cfg: PartwiseConfig) -> dict:
        if not cfg.backbone:
            raise ConfigError("backbone=PATH is required (an exported backbone or a training checkpoint)")
        return run(load_backbone(cfg.backbone, cfg.checkpoint_key)[0], cfg)

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return run_cli(PartwiseConfig, argv, "analysis.robustness.partwise", body)


if __name__ == "__main__":
    raise SystemExit(main())
