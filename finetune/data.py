"""Fine-tuning data: timm's recipe transforms, Mixup/CutMix targets and epoch-seeded loaders.

Reference §3.5: train = RandomResizedCrop (0.08-1, bicubic) + flip + RandAugment
`rand-m9-mstd0.5-inc1` + ImageNet normalisation + RandomErasing(0.25, pixel, count 1); eval =
Resize(int(size / 0.875), bilinear) + CenterCrop(size). Mixup 0.8 / CutMix 1.0 (prob 1, switch 0.5,
batch mode) with label smoothing 0.1 folded into the soft targets -> soft-target cross-entropy.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageOps
from timm.data import Mixup, create_transform
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from pretrain import IMAGENET_MEAN, IMAGENET_STD, seed_worker

from .config import FinetuneConfig, uses_mixup


def train_transform(cfg: FinetuneConfig) -> Callable:
    """timm's training pipeline with the recipe's RandAugment and random erasing."""
    transform = create_transform(
        cfg.image_size,
        is_training=True,
        auto_augment=cfg.auto_augment,
        interpolation=cfg.train_interpolation,
        re_prob=cfg.reprob,
        re_mode="pixel",
        re_count=1,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )
    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):  # RandAugment's ops
            if op.name.startswith("Posterize"):
                op.aug_fn = posterize
    return transform


def posterize(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """Keep the top `bits_to_keep` bits per channel; 0 bits gives a black image.

    timm's `PosterizeIncreasing` asks for 0 bits at magnitude 10 (m9 + mstd 0.5 reaches it in ~2%
    of draws); Pillow < 12 returned black there, newer Pillow raises ValueError and kills the loader.
    """
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def val_transform(image_size: int, crop_pct: float = 0.875, interpolation: str = "bilinear") -> Callable:
    """Resize(int(size / crop_pct)) + CenterCrop(size) + ImageNet normalisation (224 -> 256 -> 224)."""
    return create_transform(
        image_size,
        is_training=False,
        interpolation=interpolation,
        crop_pct=crop_pct,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def make_mixup(cfg: FinetuneConfig, num_classes: int) -> Mixup | None:
    """timm Mixup/CutMix producing smoothed soft targets (B, C), or None when both are off."""
    if not uses_mixup(cfg):
        return None
    return Mixup(
        mixup_alpha=cfg.mixup,
        cutmix_alpha=cfg.cutmix,
        prob=cfg.mixup_prob,
        switch_prob=cfg.mixup_switch_prob,
        mode="batch",
        label_smoothing=cfg.smoothing,
        num_classes=num_classes,
    )


def make_criterion(cfg: FinetuneConfig) -> nn.Module:
    """Soft-target CE with mixup (smoothing is in the targets), else CE with label smoothing."""
    if uses_mixup(cfg):
        return SoftTargetCrossEntropy()
    return nn.CrossEntropyLoss(label_smoothing=cfg.smoothing)


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch, numpy and random from (seed, epoch, rank).

    Every random draw of an epoch (crops, RandAugment, erasing, mixup, drop-path, worker seeds)
    then depends only on these three numbers, so a run resumed at an epoch boundary repeats it exactly.
    """
    s = (seed * 1_000_003 + epoch * 1_009 + rank) % 2**31
    torch.manual_seed(s)
    np.random.seed(s)
    random.seed(s)


def train_loader(
    dataset: Dataset, cfg: FinetuneConfig, epoch: int, rank: int, world: int, pin: bool = False
) -> DataLoader:
    """Shuffled, drop-last loader; the order depends on (seed, epoch) only (DistributedSampler under DDP)."""
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
    return DataLoader(
        dataset, cfg.batch_size_per_gpu, sampler=sampler, num_workers=cfg.num_workers, drop_last=True,
        pin_memory=pin, worker_init_fn=seed_worker,
    )  # fmt: skip


def val_loader(dataset: Dataset, cfg: FinetuneConfig, rank: int, world: int, pin: bool = False) -> DataLoader:
    """Every rank reads a disjoint slice (no padding), so summed counts are exact."""
    shard = Subset(dataset, range(rank, len(dataset), world)) if world > 1 else dataset
    batch = max(1, int(1.5 * cfg.batch_size_per_gpu))
    return DataLoader(shard, batch, shuffle=False, num_workers=cfg.num_workers, pin_memory=pin)
