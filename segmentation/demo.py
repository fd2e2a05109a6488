"""`demo_segmentation`: a short UperNet or linear-head run on the demo world's ADE-style folder.

The reference protocol scaled to a few CPU minutes: crops the size of the scenes (128 px by default),
img_scale (4c, c) with ratios 0.5-2, sliding windows of c with stride 2c/3, batch 8, warm-up over
the first 10 % of the iterations, and the iteration count fitted to the time budget from a timed
step. The lrs are raised for the short schedule (UperNet 2e-4, layer decay 0.65; linear 1e-3) and
UperNet's width is 64 channels instead of D (three times fewer FLOPs per step at D = 192).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image

from plumbing import autocast, save_config, write_results
from pretrain import load_backbone, mask_grid

from .config import SegConfig, read_classes, resolve_hparams, resolve_num_classes
from .data import ade_pairs
from .engine import build_optimizer, train_step
from .trainer import make_model, run

DEMO_LR = {"upernet": (2e-4, 0.65), "linear": (1e-3, 1.0)}


def demo_config(ade_root: str | os.PathLike, out_dir: str | os.PathLike, head: str, patch: int) -> SegConfig:
    """Reference recipe with sizes taken from the folder's first training image; `patch` = pixels per
    output token (the ViT patch, 32 for Swin)."""
    with Image.open(ade_pairs(ade_root, "train")[0][0]) as im:
        short = min(im.size)
    crop = max(patch, min(short, 512) // patch * patch)
    lr, ld = DEMO_LR[head]
    return SegConfig(
        data_path=str(ade_root),
        output_dir=str(out_dir),
        head=head,
        img_scale=[4 * crop, crop],
        crop_size=crop,
        test_stride=max(patch, round(crop * 2 / 3)),
        batch_size_per_gpu=8,  # one CPU process
        channels=64,  # UperNet width scaled down with everything else (reference: D)
        aux_channels=64,
        lr=lr,
        layer_decay=ld,
        drop_path_rate=0.0,
        num_workers=0,
        save_every=10**9,
        progress=False,
    )


def seconds_per_step(backbone: torch.nn.Module, cfg: SegConfig) -> float:
    """Time of one training step (after one warm-up step) on a random batch of the config's size."""
    num_classes = resolve_num_classes(cfg, read_classes(cfg.data_path))
    hp = resolve_hparams(cfg, backbone)
    model, _ = make_model(backbone, cfg, num_classes, hp["drop_path_rate"])
    opt = build_optimizer(model, hp["lr"], hp["layer_decay"], cfg.weight_decay, cfg.betas)
    c = cfg.crop_size
    b = cfg.batch_size_per_gpu
    batch = (torch.randn(b, 3, c, c), torch.randint(0, num_classes, (b, c, c)))
    model.train()
    train_step(model, batch, opt, cfg.aux_weight, autocast("cpu", cfg.precision))
    t0 = time.perf_counter()
    train_step(model, batch, opt, cfg.aux_weight, autocast("cpu", cfg.precision))
    return time.perf_counter() - t0


def demo_segmentation(
    backbone_path: str | os.PathLike,
    ade_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    minutes: float = 2.0,
    head: str = "upernet",
    **overrides,
) -> dict:
    """Train `head` on `ade_root` for about `minutes` of CPU time in total, evaluate, write
    config.yaml / results.json / predictions.png into `out_dir`; returns the results (mIoU in %)."""
    backbone, info = load_backbone(backbone_path)
    cfg = replace(demo_config(ade_root, out_dir, head, mask_grid(backbone)), **overrides)
    if "iters" not in overrides:
        per_step = seconds_per_step(backbone, cfg) * 1.15  # data loading on top
        n_val = len(ade_pairs(ade_root, "val")[: cfg.val_limit])
        eval_seconds = n_val * per_step / cfg.batch_size_per_gpu * 2  # one forward per image, windows overlap
        iters = max(10, int((minutes * 60 - eval_seconds) / per_step))
        cfg = replace(cfg, iters=iters)
    cfg = replace(cfg, warmup_iters=overrides.get("warmup_iters", max(1, cfg.iters // 10)))
    cfg.check()  # bad values are refused before anything is written
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # A demo trains afresh: its step count is timed anew each call, so an earlier call's checkpoint
    # (another step count) would be refused as a different run.
    cfg = replace(cfg, resume=False)  # an earlier call's files are moved aside (previous-<time>/)
    t0 = time.time()
    results = {**run(backbone, cfg), "backbone": info, "total_seconds": round(time.time() - t0, 1)}
    save_config(cfg, out_dir)
    write_results(results, out_dir)
    return results
