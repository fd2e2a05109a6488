"""The training engine of a detector on COCO: AdamW + layer decay, 1x step schedule, DDP, exact resume,
an optional time limit (reference §3.6; `work.run` drives it).

`train` resumes from `output_dir/checkpoint.pth` when present. Checkpoints are written atomically after
every epoch and hold tensors and plain types only. An epoch's randomness is a function of (seed, epoch,
rank): the model's RNG is reseeded at each epoch start and every sample's augmentation has its own seed,
so a resumed run continues exactly as an uninterrupted one. When `precision` resolves to bf16 (auto: on
CUDA) the backbone runs under bf16 autocast, the RPN and RoI heads in fp32. The per-epoch losses are
averaged over ranks; TensorBoard (`output_dir/tensorboard`, rank 0) gets rank 0's losses and the lr at
every iteration (`train/*`) and the AP figures of each evaluation (`val/*`).
`time_limit_min` stops training at the first iteration boundary after that many minutes (all ranks at
the same iteration); `checkpoint.pth` then stays at the last complete epoch, so a resume still continues
exactly (the cut epoch is trained again), and the model as trained is what gets evaluated.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from evalkit import ScalarLog
from plumbing import (
    LossDivergedError,
    all_reduce_mean,
    get_rank,
    get_world_size,
    out_of_time,
    to_plain,
)
from pretrain import atomic_save

from .config import DetectionConfig
from .data import CocoInstances, collate, train_transform
from .model import param_groups
from .store import FORMAT_TRAINING, detector_payload, load_training

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
    stop: Callable[[], bool] = lambda: False,
) -> tuple[dict[str, float], int | None]:
    """One pass over `loader`; lr of group g at iteration it = cfg.lr * factors[it] * g["lr_scale"].

    Every iteration's losses and peak lr go to `tb` (step = iterations done). Returns the mean losses and,
    when `stop()` answered True after an iteration (the time limit), the iterations done (else None)."""
    model.train()
    sums: dict[str, float] = {}
    n, stopped = 0, None
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
            raise LossDivergedError(f"loss is {loss.item()} at iteration {first_it + i}: {losses}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += 1
        values = {k: v.item() for k, v in {"loss": loss, **losses}.items()}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        tb.log({**values, "lr": lr}, first_it + i + 1)
        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{lr:.2e}")
        if stop():
            stopped = n
            break
    return {k: v / max(n, 1) for k, v in sums.items()}, stopped


def train(
    model: nn.Module, train_set: CocoInstances, cfg: DetectionConfig, device: torch.device, arch: str
) -> tuple[list[dict], dict | None]:
    """Train `model` (already on `device`) for the remaining epochs or until `cfg.time_limit_min`; returns
    the per-epoch log (a last row with `iterations` for an epoch the time limit cut) and, when the time
    limit stopped it, {time_limit_min, iterations, epochs, minutes} (else None)."""
    rank, world = get_rank(), get_world_size()
    optimizer = build_optimizer(model, cfg)
    start, history = 0, []
    ckpt_path = Path(cfg.output_dir) / "checkpoint.pth"
    if cfg.resume and ckpt_path.is_file():
        start, history = load_training(ckpt_path, model, optimizer)
        log.info(f"resumed from {ckpt_path} after epoch {start}")
    ddp = model
    if world > 1:
        ddp = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    iters = iters_per_epoch(len(train_set), world, cfg.batch_size_per_gpu)
    factors, tb, t0 = lr_factors(cfg, iters), ScalarLog(cfg.output_dir), time.time()
    stop, done = partial(out_of_time, t0, cfg.time_limit_min, device), None
    for epoch in range(start, cfg.epochs):
        torch.manual_seed(cfg.seed * 100_003 + epoch * 1_009 + rank)  # RPN/RoI sampling, drop path
        loader = train_loader(train_set, cfg, rank, world, epoch)
        stats, done = train_one_epoch(ddp, optimizer, loader, factors, epoch * iters, cfg, device, tb, stop)
        stats = _mean_over_ranks(stats, device)
        if done is not None and done < iters:  # cut mid-epoch: checkpoint.pth stays at the last complete epoch
            history.append({"epoch": epoch + 1, "iterations": done, **stats})
            break
        history.append({"epoch": epoch + 1, **stats})
        log.info(f"epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in stats.items()))
        if rank == 0:
            payload = detector_payload(model, cfg, train_set, arch, FORMAT_TRAINING)
            payload.update(epoch=epoch + 1, optimizer=optimizer.state_dict(), history=to_plain(history))
            atomic_save(payload, ckpt_path)
        if done is not None:
            break
    tb.close()
    return history, _stop_record(history, iters, cfg, t0) if done is not None else None


def _stop_record(history: list[dict], iters: int, cfg: DetectionConfig, t0: float) -> dict:
    """What a time-limited run trained: iterations and epochs (fractional) in all, minutes in this process."""
    last = history[-1]
    n = (last["epoch"] - 1) * iters + last.get("iterations", iters)
    minutes = round((time.time() - t0) / 60, 3)
    log.info(f"time limit of {cfg.time_limit_min} min reached after iteration {n} ({minutes} min of training)")
    return {"time_limit_min": cfg.time_limit_min, "iterations": n, "epochs": round(n / iters, 3), "minutes": minutes}


def _mean_over_ranks(stats: dict[str, float], device: torch.device) -> dict[str, float]:
    values = torch.tensor(list(stats.values()), dtype=torch.float64, device=device)  # NCCL needs CUDA tensors
    return dict(zip(stats, all_reduce_mean(values).tolist(), strict=True))


def log_evaluation(output_dir: str, metrics: dict[str, float | None], step: int) -> None:
    """The AP figures of one evaluation as TensorBoard scalars `val/<metric>` at training step `step`."""
    tb = ScalarLog(output_dir)
    tb.log(metrics, step, prefix="val")
    tb.close()
