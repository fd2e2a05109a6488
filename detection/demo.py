"""A detection run on the demo world sized to a CPU time budget (for `make demo`).

The reference recipe scaled down to 128 px scenes: the same augmentation and schedule shape (step
decay at 8/12 and 11/12 of the epochs), Mask R-CNN (it learns faster than the cascade in a few
hundred iterations), 32-channel FPN/heads, fewer proposals and RoIs, lr 1e-3, and as many epochs
as the budget allows (timed on a few iterations first). The ViT's own cost dominates an iteration.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any

import torch

from plumbing import DatasetError, save_config, write_results
from pretrain import load_backbone

from .config import DetectionConfig, DetectorSpec
from .engine import datasets, log_evaluation, train
from .inference import evaluate
from .store import build_from_config, save_detector

log = logging.getLogger(__name__)

DEMO_SPEC = DetectorSpec(
    detector="mask_rcnn",
    fpn_channels=32,
    conv_channels=32,
    fc_dim=128,
    rpn_pre_nms_train=500,
    rpn_post_nms_train=250,
    rpn_pre_nms_test=300,
    rpn_post_nms_test=100,
    rois_per_image=64,
    test_short=128,
    test_max=192,
)


def demo_config(
    backbone_path: str | Path, coco_root: str | Path, out_dir: str | Path, **overrides: Any
) -> DetectionConfig:
    """Config for the demo world's COCO set in COCO 2017's layout (`data_path=<coco_root>`: `train2017/`,
    `val2017/`, `annotations/instances_{train,val}2017.json`; 128 px scenes); `overrides` replace any field."""
    cfg = DetectionConfig(
        pretrained=str(backbone_path),
        data_path=str(coco_root),
        drop_path_rate=0.0,
        model=DEMO_SPEC,
        train_scales=[96, 112, 128],
        train_max=192,
        crop_scales=[96, 112, 128],
        crop_range=[80, 112],
        warmup_iters=30,
        lr=1e-3,
        layer_decay=0.75,
        batch_size_per_gpu=4,
        output_dir=str(out_dir),
        resume=False,
        num_workers=0,
        device="cpu",
        progress=False,
    )
    return dataclasses.replace(cfg, **overrides)


def demo_detection(
    backbone_path: str | Path, coco_root: str | Path, out_dir: str | Path, minutes: float = 3.0, **overrides: Any
) -> dict[str, Any]:
    """Fine-tune and evaluate on the demo world within about `minutes` of CPU time.

    The first epoch is timed; the run then resumes from its checkpoint for as many epochs as fit
    (epoch 1 does not depend on the total: warm-up is fixed and the lr steps come later). Returns AP
    figures (percent) with the epochs run and the time taken; writes config.yaml, checkpoint.pth,
    detector.pth, the COCO result jsons and results.json into `out_dir`.
    """
    start = time.perf_counter()
    cfg = demo_config(backbone_path, coco_root, out_dir, **overrides)
    if not Path(cfg.train_split()[1]).is_file():
        raise DatasetError(f"no demo-world COCO set under {coco_root} (expected annotations/instances_train2017.json)")
    out = Path(cfg.output_dir)
    (out / "checkpoint.pth").unlink(missing_ok=True)  # the demo starts from scratch
    device = torch.device(cfg.device)
    train_set, val_set = datasets(cfg)
    iters = math.ceil(len(train_set) / cfg.batch_size_per_gpu)
    cfg = dataclasses.replace(cfg, warmup_iters=min(cfg.warmup_iters, iters // 2), resume=True)
    backbone, _ = load_backbone(cfg.pretrained, cfg.checkpoint_key)
    torch.manual_seed(cfg.seed)
    model, arch = build_from_config(backbone, cfg, train_set)
    model.to(device)  # train() expects the model on its device (CUDA when device=cuda)
    t0 = time.perf_counter()
    history = train(model, train_set, dataclasses.replace(cfg, epochs=1, lr_steps=[]), device, arch)
    per_epoch = time.perf_counter() - t0
    left = minutes * 60 * 0.9 - (time.perf_counter() - start) - 0.5 * per_epoch * len(val_set) / len(train_set)
    epochs = 1 + max(0, int(left / per_epoch))
    steps = sorted({round(epochs * 8 / 12), round(epochs * 11 / 12)} - {0, epochs})
    cfg = dataclasses.replace(cfg, epochs=epochs, lr_steps=steps)
    log.info(f"demo detection: first epoch {per_epoch:.0f} s ({iters} iterations) -> {epochs} epochs")
    save_config(cfg, out)
    if epochs > 1:
        history = train(model, train_set, cfg, device, arch)  # resumes after epoch 1
    save_detector(model, cfg, train_set, arch, out / "detector.pth")
    metrics = evaluate(model, val_set, device, out, cfg.batch_size_per_gpu, cfg.num_workers)
    log_evaluation(cfg.output_dir, metrics, epochs * iters)
    summary = {
        **{k: metrics[k] for k in ("bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50")},
        "detector": cfg.model.detector,
        "epochs": epochs,
        "iterations": epochs * iters,
        "minutes": round((time.perf_counter() - start) / 60, 2),
    }
    write_results({"metrics": metrics, "train": history, "summary": summary}, out)
    return summary
