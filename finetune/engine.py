"""One fine-tuning epoch and one evaluation pass (reference §3.5).

The lr of every optimizer step is `schedule[step] * group["lr_scale"]` (layer-wise decay); one
optimizer step takes `accum` micro-batches (DDP gradient sync only on the last of them). The forward
runs under `pretrain.autocast(device, precision)` (auto: bf16 on CUDA and on CPUs with native bf16);
the loss is computed in float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from plumbing import LossDivergedError, all_reduce_mean, all_reduce_sum, autocast


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Scheduled lr times each group's layer-decay scale."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterable,
    criterion: nn.Module,
    lrs: np.ndarray,
    device: torch.device,
    accum: int = 1,
    mixup=None,
    ema=None,
    clip_grad: float | None = None,
    progress: bool = False,
    desc: str = "train",
    precision: str = "auto",
) -> float:
    """`len(lrs)` optimizer steps of `accum` micro-batches each; returns the mean loss (over processes too)."""
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, seen, micro_batches = 0.0, 0, len(lrs) * accum
    bar = tqdm(total=len(lrs), desc=desc, disable=not progress, dynamic_ncols=True, leave=False)
    for i, (images, targets, _) in enumerate(batches):
        if i >= micro_batches:
            break
        step, micro = divmod(i, accum)
        images = images.to(device, non_blocking=True)  # (B, 3, H, W)
        targets = targets.to(device, non_blocking=True)  # (B,)
        if mixup is not None:
            images, targets = mixup(images, targets)  # targets -> soft (B, C), rows sum to 1
        last = micro == accum - 1
        no_sync = isinstance(model, DistributedDataParallel) and not last
        with model.no_sync() if no_sync else nullcontext():
            with autocast(device, precision):
                logits = model(images)  # (B, C)
            loss = criterion(logits.float(), targets)
            if not torch.isfinite(loss):
                raise LossDivergedError(f"loss is {loss.item()} at step {step}; stopping")
            (loss / accum).backward()
        total, seen = total + loss.item(), seen + 1
        if last:
            set_lr(optimizer, float(lrs[step]))
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(_unwrap(model))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lrs[step]:.2e}")
    bar.close()
    mean = torch.tensor([total / max(seen, 1)], dtype=torch.float64, device=device)
    return float(all_reduce_mean(mean).item())  # the loss of the global batch, as logged on rank 0


@torch.inference_mode()
def evaluate(
    model: nn.Module, batches: Iterable, device: torch.device, progress: bool = False, precision: str = "auto"
) -> dict:
    """Top-1 / top-5 accuracy (%) and mean CE loss; counts are summed over processes under DDP."""
    model.eval()
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # correct@1, correct@5, loss sum, count
    for images, targets, _ in tqdm(batches, desc="val", disable=not progress, leave=False):
        images, targets = images.to(device, non_blocking=True), targets.to(device, non_blocking=True)
        with autocast(device, precision):
            logits = model(images).float()  # (B, C)
        sums += _batch_counts(logits, targets)
    c1, c5, loss, n = all_reduce_sum(sums).tolist()
    n = max(n, 1.0)
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss / n}


def _batch_counts(logits: Tensor, targets: Tensor) -> Tensor:
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices  # (B, k)
    hit = top == targets[:, None]  # (B, k)
    loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
    counts = [hit[:, 0].sum(), hit.any(dim=1).sum(), loss, torch.tensor(len(targets), device=logits.device)]
    return torch.stack([c.double() for c in counts])
