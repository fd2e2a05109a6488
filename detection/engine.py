"""Fine-tune a detector on COCO: AdamW + layer decay, 1x step schedule, DDP, exact resume (reference §3.6).

`run(backbone, cfg) -> results` trains a detector on a copy of the in-memory pre-trained backbone
(resuming from `output_dir/checkpoint.pth` when present), writes `detector.pth` and evaluates on the
val split. Checkpoints are written atomically after every epoch and hold tensors and plain types
only. An epoch's randomness is a function of (seed, epoch, rank): the model's RNG is reseeded at
each epoch start and every sample's augmentation has its own seed, so a resumed run continues
exactly as an uninterrupted one. When `precision` resolves to bf16 (auto:
on CUDA) the backbone runs under bf16 autocast, the RPN and RoI heads in fp32. The per-epoch losses
are averaged over ranks; TensorBoard (`output_dir/tensorboard`, rank 0) gets rank 0's losses and the
lr at every iteration (`train/*`) and the AP figures of each evaluation (`val/*`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from evalkit import ScalarLog, describe_datasets, open_evaluation_folder
from plumbing import all_reduce_mean, get_rank, get_world_size, init_distributed, resolve_precision, to_plain
from pretrain import atomic_save

from .config import DetectionConfig
from .data import CocoInstances, collate, train_transform
from .inference import evaluate
from .model import param_groups
from .store import FORMAT_TRAINING, build_from_config, detector_payload, load_training, save_detector

log = logging.getLogger(__name__)


def lr_factors(cfg: DetectionConfig, iters_per_epoch: int) -> np.ndarray:
    """Per-iteration lr multiplier: x0.1 after each epoch in `lr_steps`, times mmdet's linear warm-up
    (1 - (1 - it / warmup_iters) * (1 - warmup_ratio)) over the first `warmup_iters` iterations."""
    it = np.arange(cfg.epochs * iters_per_epoch)
    epoch = it // iters_per_epoch
    step = 0.1 ** np.sum([epoch >= s for s in cfg.lr_steps], axis=0) if cfg.lr_steps else np.ones(len(it))
    warm = np.ones(len(it))
    if cfg.warmup_iters > 0:
        w = it < cfg.warmup_iters
        warm[w] = 1 - (1 - it[w] / cfg.warmup_iters) * (1 - cfg.warmup_ratio)
    return step * warm


def build_optimizer(model: nn.Module, cfg: DetectionConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.layer_decay, cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def datasets(cfg: DetectionConfig) -> tuple[CocoInstances, CocoInstances]:
    """(train, val) sets: data_path's standard COCO 2017 layout unless the explicit keys override it."""
    aug = train_transform(cfg.train_scales, cfg.train_max, cfg.crop_scales, cfg.crop_range, cfg.flip_prob)
    train = CocoInstances(*cfg.train_split(), aug, True, cfg.seed, cfg.max_train_images)
    val = CocoInstances(*cfg.val_split(), max_images=cfg.max_val_images)
    return train, val


def iters_per_epoch(n_images: int, world: int, batch_size: int) -> int:
    """Steps per epoch: each rank gets ceil(n / world) images (DistributedSampler pads), batches not dropped."""
    return math.ceil(math.ceil(n_images / world) / batch_size)


def train_loader(train: CocoInstances, cfg: DetectionConfig, rank: int, world: int, epoch: int) -> DataLoader:
    sampler = DistributedSampler(train, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    sampler.set_epoch(epoch)
    train.set_epoch(epoch)
    return DataLoader(
        train, cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers, collate_fn=collate, drop_last=False
    )


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    factors: np.ndarray,
    first_it: int,
    cfg: DetectionConfig,
    device: torch.device,
    tb: ScalarLog,
) -> dict[str, float]:
    """One pass over `loader`; lr of group g at iteration it = cfg.lr * factors[it] * g["lr_scale"].

    Every iteration's losses and peak lr go to `tb` (step = iterations done)."""
    model.train()
    sums: dict[str, float] = {}
    n = 0
    bar = tqdm(loader, desc="train", disable=not (cfg.progress and get_rank() == 0), leave=False)
    for i, (images, targets) in enumerate(bar):
        lr = float(cfg.lr * factors[first_it + i])
        for g in optimizer.param_groups:
            g["lr"] = lr * g["lr_scale"]
        images = [im.to(device, non_blocking=True) for im in images]
        targets = [{k: v.to(device) for k, v in t.items() if k != "image_id"} for t in targets]
        losses = model(images, targets)  # dict of scalar losses (the backbone may run in bf16)
        loss = sum(losses.values())
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at iteration {first_it + i}: {losses}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += 1
        values = {k: v.item() for k, v in {"loss": loss, **losses}.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        tb.log({**values, "lr": lr}, first_it + i + 1)
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
    return {k: v / max(n, 1) for k, v in sums.items()}


def train(
    model: nn.Module, train_set: CocoInstances, cfg: DetectionConfig, device: torch.device, arch: str
) -> list[dict]:
    """Train `model` (already on `device`) for the remaining epochs; returns the per-epoch log."""
    rank, world = get_rank(), get_world_size()
    out = Path(cfg.output_dir)
    optimizer = build_optimizer(model, cfg)
    start, history = 0, []
    ckpt_path = out / "checkpoint.pth"
    if cfg.resume and ckpt_path.is_file():
        start, history = load_training(ckpt_path, model, optimizer)
        log.info(f"resumed from {ckpt_path} after epoch {start}")
    ddp = model
    if world > 1:
        ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    iters = iters_per_epoch(len(train_set), world, cfg.batch_size_per_gpu)
    factors = lr_factors(cfg, iters)
    tb = ScalarLog(cfg.output_dir)
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + rank)  # RPN/RoI sampling, drop path
        loader = train_loader(train_set, cfg, rank, world, epoch)
        stats = train_one_epoch(ddp, optimizer, loader, factors, epoch * iters, cfg, device, tb)
        stats = _mean_over_ranks(stats, device)
        history.append({"epoch": epoch + 1, **stats})
        log.info(f"epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items()))
        if rank == 0:
            payload = detector_payload(model, cfg, train_set, arch, FORMAT_TRAINING)
            payload.update(epoch=epoch + 1, optimizer=optimizer.state_dict(), history=to_plain(history))
            atomic_save(payload, ckpt_path)
    tb.close()
    return history


def _mean_over_ranks(stats: dict[str, float], device: torch.device) -> dict[str, float]:
    values = torch.tensor(list(stats.values()), dtype=torch.float64, device=device)  # NCCL needs CUDA tensors
    return dict(zip(stats, all_reduce_mean(values).tolist(), strict=True))


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
    history = train(model, train_set, cfg, device, arch)
    if rank == 0:
        save_detector(model, cfg, train_set, arch, Path(cfg.output_dir) / "detector.pth")
    metrics = evaluate(model, val_set, device, cfg.output_dir, cfg.batch_size_per_gpu, cfg.num_workers, cfg.progress)
    log_evaluation(cfg.output_dir, metrics, cfg.epochs * iters_per_epoch(len(train_set), world, cfg.batch_size_per_gpu))
    return {"metrics": metrics, "train": history, "num_classes": train_set.num_classes, "world_size": world}


def log_evaluation(output_dir: str, metrics: dict[str, float | None], step: int) -> None:
    """The AP figures of one evaluation as TensorBoard scalars `val/<metric>` at training step `step`."""
    tb = ScalarLog(output_dir)
    tb.log(metrics, step, prefix="val")
    tb.close()
