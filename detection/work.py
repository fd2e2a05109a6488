"""The work of `python -m detection`: `run(backbone, cfg) -> results` fine-tunes a detector on a copy of the
in-memory pre-trained backbone (resuming from `output_dir/checkpoint.pth` when present; `engine.train`),
writes `detector.pth` and evaluates it on the val split (COCOeval bbox and segm).

With `time_limit_min` set, training stops at the first iteration boundary after that many minutes, the
model as trained is written and evaluated, and the results say so: `"stopped": {"time_limit_min",
"iterations", "epochs", "minutes"}` (absent when the schedule ran to its end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalkit import describe_datasets, open_evaluation_folder
from plumbing import init_distributed, resolve_precision

from .config import DetectionConfig
from .engine import datasets, iters_per_epoch, log_evaluation, train
from .inference import evaluate
from .store import build_from_config, save_detector


def run(backbone: nn.Module, cfg: DetectionConfig) -> dict[str, Any]:
    """Fine-tune a detector on a copy of `backbone` (or resume it) and evaluate it; returns the results dict.

    `backbone` is any core ViT or Swin (`pretrain.load_backbone`'s output); it is not modified.
    """
    rank, world, device = init_distributed(cfg.device)
    train_set, val_set = datasets(cfg)
    # the folder's run must have started from the same backbone, data and keys (or resume=false moves it aside)
    open_evaluation_folder(cfg, Path(cfg.output_dir) / "checkpoint.pth", {"backbone": backbone},
                    describe_datasets(train=train_set, val=val_set), what="detection run")  # fmt: skip
    torch.manual_seed(cfg.seed)  # head initialisation
    model, arch = build_from_config(backbone, cfg, train_set, resolve_precision(cfg.precision, device))
    model.to(device)
    if world > 1 and device.type == "cuda":  # SyncBN (adaptor, box heads) as the reference; CUDA only
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    history, stopped = train(model, train_set, cfg, device, arch)
    if rank == 0:
        save_detector(model, cfg, train_set, arch, Path(cfg.output_dir) / "detector.pth")
    metrics = evaluate(model, val_set, device, cfg.output_dir, cfg.batch_size_per_gpu, cfg.num_workers, cfg.progress)
    iters = iters_per_epoch(len(train_set), world, cfg.batch_size_per_gpu)
    log_evaluation(cfg.output_dir, metrics, stopped["iterations"] if stopped else cfg.epochs * iters)
    results = {"metrics": metrics, "train": history, "num_classes": train_set.num_classes, "world_size": world}
    return {**results, "stopped": stopped} if stopped else results
