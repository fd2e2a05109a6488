"""Training and evaluation pieces: schedule, optimizer, one step, checkpoints, distributed evaluation.

Schedule (mmcv `poly` + linear warm-up, per iteration): lr(t) = base * (1 - t/T)^power, multiplied during
the first W iterations by 1 - (1 - t/W)(1 - warmup_ratio). Each AdamW group carries `lr_scale` from the
BEiT layer decay (reference §3.6-3.7: embeddings id 0, block i id i+1, the rest L+1; biases and 1-D
tensors without weight decay, pos_embed/cls_token decayed as in the reference); a Swin's ids are its own
`layer_id` (blocks of all stages), its stage norms count with the heads (L+1).
Exact resume: the model, optimizer and step are checkpointed; data order and augmentations are
functions of the step (`StepBatchSampler`), and dropout / drop-path draw from a generator reseeded
from (seed, step, rank) at every step.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from evalkit import backbone_layer_id, layer_decay_param_groups
from plumbing import (
    CheckpointError,
    LossDivergedError,
    all_reduce_sum,
    get_rank,
    get_world_size,
)
from pretrain import atomic_save, build_backbone, mask_grid, safe_load

from .data import ADEValSet, first_item
from .inference import InferenceSpec, predict
from .metrics import confusion_matrix
from .model import Segmentor, build_segmentor, seg_loss

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "ibot-suite/segmentation-checkpoint"


def poly_lr(step: int, base_lr: float, total: int, warmup: int, warmup_ratio: float, power: float = 1.0) -> float:
    """Learning rate at iteration `step` (0-based): poly decay to 0 with a linear warm-up factor."""
    lr = base_lr * (1 - step / total) ** power
    if step < warmup:
        lr *= 1 - (1 - step / warmup) * (1 - warmup_ratio)
    return lr


def build_optimizer(
    model: Segmentor, lr: float, layer_decay: float, weight_decay: float, betas: Iterable[float]
) -> torch.optim.AdamW:
    """AdamW over the trainable parameters with layer-decay groups (`lr_scale`)."""
    body = model.backbone.body  # the core ViT or Swin
    prefix = f"backbone.{model.backbone.body_name}."  # backbone.vit. or backbone.swin.
    groups = layer_decay_param_groups(
        model.named_parameters(), body.depth, layer_decay, weight_decay, prefix, layer_id=backbone_layer_id(body)
    )
    for g in groups:
        del g["names"]
        g["lr"] = lr * g["lr_scale"]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Scheduled lr times each group's layer-decay `lr_scale`."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]


def step_seed(seed: int, step: int, rank: int) -> int:
    """Seed of the model's random draws (dropout, drop path) at one step of one rank."""
    return int(np.random.SeedSequence([seed, 2, step, rank]).generate_state(1)[0])


def train_step(
    model: nn.Module, batch: tuple[Tensor, Tensor], optimizer: torch.optim.Optimizer, aux_weight: float, amp
) -> dict[str, float]:
    """Forward (under `amp`), loss, backward, AdamW step; returns the loss terms."""
    img, label = batch  # (B, 3, c, c), (B, c, c)
    with amp:
        logits, aux = model(img)
    losses = seg_loss(logits, aux, label, aux_weight)
    if not torch.isfinite(losses["loss"]):
        raise LossDivergedError(f"non-finite segmentation loss {losses['loss'].item()}")
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    return {k: v.item() for k, v in losses.items()}


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, model: Segmentor, optimizer: torch.optim.Optimizer, step: int, meta: dict) -> None:
    """Atomic training checkpoint: tensors and plain types only (`weights_only` readable)."""
    atomic_save(
        {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            **meta,
        },
        path,
    )


def load_checkpoint(path: Path, model: Segmentor, optimizer: torch.optim.Optimizer | None, identity: dict) -> int:
    """Restore model (+ optimizer) from a training checkpoint made with the same `identity`; returns the step."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a segmentation training checkpoint")
    stored = ckpt.get("identity", {})
    diff = sorted(k for k in set(identity) | set(stored) if identity.get(k) != stored.get(k))
    if diff:
        detail = ", ".join(f"{k}: {stored.get(k)!r} -> {identity.get(k)!r}" for k in diff)
        raise CheckpointError(f"{path} was written by a different run ({detail}); use another output_dir")
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {' '.join(str(e).split())}") from None
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["step"])


def load_segmentor(path: str | os.PathLike) -> tuple[Segmentor, dict]:
    """Rebuild a trained segmentor (eval mode) from `seg_checkpoint.pth`; returns it and the metadata."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or "model_args" not in ckpt:
        raise CheckpointError(f"{path}: not a segmentation checkpoint")
    args = dict(ckpt["model_args"])
    arch = args.pop("arch", "vit_small")  # files written before Swin support hold a ViT and no name
    vit = build_backbone(arch, **{**args.pop("arch_kwargs"), "drop_path_rate": 0.0})  # eval: no drop path
    model = build_segmentor(vit, **args)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {' '.join(str(e).split())}") from None
    return model.eval(), {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}


# ------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: Segmentor,
    dataset: ADEValSet,
    spec: InferenceSpec,
    device: torch.device,
    amp,
    keep: int = 0,
    progress: bool = False,
    num_workers: int = 0,
) -> tuple[Tensor, list[tuple[Tensor, Tensor, Tensor]]]:
    """Confusion matrix over the dataset (sharded over ranks, summed) and the first `keep` samples of
    this rank as (image, gt, prediction) for the figure."""
    rank, world = get_rank(), get_world_size()
    model.eval()
    K = model.decode_head.classifier[-1].out_channels
    conf = torch.zeros(K, K, dtype=torch.int64)
    shard = torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
    loader = torch.utils.data.DataLoader(shard, batch_size=1, num_workers=num_workers, collate_fn=first_item)
    samples = []

    def decode(x: Tensor) -> Tensor:
        with amp:
            return model.encode_decode(x)

    for img, gt, _ in tqdm(loader, desc="val", disable=not progress, leave=False):
        pred = predict(decode, img.to(device), spec, mask_grid(model.backbone.body)).cpu()  # pad to the token grid
        conf += confusion_matrix(pred, gt, K)
        if len(samples) < keep:
            samples.append((img, gt, pred))
    if world > 1:
        conf = all_reduce_sum(conf.to(device)).cpu()
    return conf, samples
