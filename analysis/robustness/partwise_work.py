"""Part-wise linear probing: linear heads on the mean of the k most (or least) attended patches.

Reference §3.8 ("Part-wise linear probing"): per image, the last block's [CLS] -> patch attention
averaged over heads ranks the patches; the feature is the mean of the last block's tokens at the
top-k (`order=top`) or bottom-k (`order=bottom`) patches, k in {1, 7, 14, 56, 112, 196}. The
reference builds the model with mean pooling, so the tokens are taken before the final LayerNorm
(`final_norm=false`, the default). Each (order, k) trains the linear-probe sweep of
`python -m eval_linear` (reference §3.2: SGD momentum 0.9, lrs scaled by batch / 256, per-epoch
cosine, RandomResizedCrop + flip, best val top-1 over heads and epochs) through the head-grid
functions of `evalkit`; only the feature function differs. Values of k above the number of patches
are skipped. ViT only: a Swin backbone has no [CLS] attention and stops with one line. Every
(order, k) logs its train loss, epoch and best val top-1 and lr to TensorBoard
(`output_dir/tensorboard/`, tag prefix `partwise/<order>-<k>`).

    python -m analysis.robustness.partwise pretrained=backbone.pth data_path=/data/imagenet epochs=100
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, RandomSampler

from evalkit import (
    PAPER_LRS,
    BestTracker,
    HeadGrid,
    ScalarLog,
    eval_transform,
    evaluate_heads,
    extract_features,
    frozen,
    image_splits,
    linear_train_transform,
    make_grid,
    make_optimizer,
    set_epoch_lr,
    train_one_epoch,
)
from plumbing import ConfigError, resolve_device

from ..common import require_cls_attention
from .common import plot_curves
from .config import ORDERS, PartwiseConfig

log = logging.getLogger(__name__)


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


def _sweep(fn: Callable, dim: int, train_set, val, cfg: PartwiseConfig, dev, tb: ScalarLog, tag: str) -> dict:
    """The linear-probe sweep on part features; (B, D) features are the `cls` recipe width of 1 block.

    `val` is (features (N, D), labels (N,)); every epoch logs `tag/{loss,top1,best_top1}` to `tb`.
    """
    torch.manual_seed(cfg.seed)
    lrs = cfg.lrs or PAPER_LRS
    grid = make_grid(["cls"], lrs, cfg.wds)
    heads = HeadGrid(grid, dim, 1, len(train_set.classes)).to(dev)
    optimizer = make_optimizer(heads, cfg.batch_size_per_gpu / 256, cfg.momentum)
    tracker = BestTracker(len(grid))
    for epoch in range(cfg.epochs):
        set_epoch_lr(optimizer, epoch, cfg.epochs)
        sampler = RandomSampler(train_set, generator=torch.Generator().manual_seed(cfg.seed + epoch))
        loader = DataLoader(train_set, cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers)
        loss = train_one_epoch(fn, heads, optimizer, loader, dev, cfg.progress, cfg.precision)
        accs = evaluate_heads(heads, *val)
        tracker.update(accs, epoch)
        top1 = max(a for a, _ in accs)
        tb.log({"loss": loss, "top1": top1, "best_top1": tracker.best["top1"]}, epoch, f"partwise/{tag}")
    best = tracker.best
    return {**best, "lr": grid[best["head"]].lr, "wd": grid[best["head"]].wd}


def run_partwise(model: nn.Module, cfg: PartwiseConfig, info: dict | None = None) -> dict:
    """Best val top-1 of the sweep for every (order, k); `model` is a backbone or a classifier."""
    backbone = getattr(model, "backbone", model)
    require_cls_attention(backbone, "part-wise features (patches ranked by [CLS] attention)")
    cfg.check()
    if cfg.epochs < 1 or any(lr <= 0 for lr in cfg.lrs):
        raise ConfigError("epochs >= 1 and positive lrs are required")
    dev = resolve_device(cfg.device)
    n_patches = (cfg.image_size // backbone.patch_size) ** 2
    train_set, val_set = image_splits(
        cfg.data_path, linear_train_transform(cfg.image_size), eval_transform(cfg.image_size)
    )
    rows, skipped = [], [k for k in cfg.ks if k > n_patches]
    tb = ScalarLog(cfg.output_dir)
    with frozen(backbone), torch.random.fork_rng(devices=[]):
        backbone.to(dev)
        for order in cfg.orders:
            for k in (k for k in cfg.ks if k <= n_patches):
                fn = part_feature_fn(backbone, k, order, cfg.final_norm)
                val = extract_features(fn, val_set, cfg.batch_size_per_gpu, cfg.num_workers, dev, None, cfg.progress,
                                       "val", precision=cfg.precision)  # fmt: skip
                best = _sweep(fn, backbone.embed_dim, train_set, val, cfg, dev, tb, f"{order}-{k}")
                log.info("part-wise %s-%d: top-1 %.2f", order, k, best["top1"])
                rows.append({"order": order, "k": k, **best})
    tb.close()
    curves = {
        o: ([r["k"] for r in rows if r["order"] == o], [r["top1"] for r in rows if r["order"] == o]) for o in cfg.orders
    }
    path = Path(cfg.output_dir) / "partwise.png"
    figure = plot_curves(path, curves, "k patches (by [CLS] attention)", "best val top-1 %", "part-wise linear probing")
    return {"results": rows, "skipped_ks": skipped, "num_patches": n_patches, "epochs": cfg.epochs, "figure": figure}
