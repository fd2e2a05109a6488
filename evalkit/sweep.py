"""A grid of linear heads trained together on one frozen forward (reference §3.2, `eval_linear_multi`).

Every head is `Linear(feature_dim, num_classes)` (weight ~ N(0, 0.01), bias 0) on the features of
its recipe, trained with SGD (momentum 0.9) at its own lr and weight decay; the lrs are scaled by
total batch / 256 and follow a cosine decayed once per epoch (CosineAnnealingLR, eta_min 0). The
backbone runs once per batch: `cls` features are a prefix of `cls+avgpool` features (see
pretrain.features), so each head reads a slice of the widest recipe's output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from plumbing import autocast

from .features import recipe_dim


@dataclass(frozen=True)
class HeadSpec:
    """One point of the grid."""

    recipe: str
    lr: float  # before batch scaling
    wd: float


def make_grid(recipes: Iterable[str], lrs: Iterable[float], wds: Iterable[float]) -> list[HeadSpec]:
    """recipes x lrs x wds, in that order."""
    return [HeadSpec(r, float(lr), float(wd)) for r in recipes for lr in lrs for wd in wds]


def widest_recipe(grid: list[HeadSpec]) -> str:
    """The recipe whose features contain every other recipe's as a prefix."""
    return "cls+avgpool" if any(h.recipe == "cls+avgpool" for h in grid) else "cls"


class HeadGrid(nn.Module):
    """The heads of a grid; `forward(features (B, F_widest)) -> list of logits (B, C)`."""

    def __init__(self, grid: list[HeadSpec], widths: int | list[int], n_last_blocks: int, num_classes: int):
        super().__init__()
        self.grid = grid
        self.dims = [recipe_dim(h.recipe, widths, n_last_blocks) for h in grid]
        self.heads = nn.ModuleList(nn.Linear(d, num_classes) for d in self.dims)
        for head in self.heads:
            nn.init.normal_(head.weight, mean=0.0, std=0.01)
            nn.init.zeros_(head.bias)

    def forward(self, features: Tensor) -> list[Tensor]:
        return [head(features[:, :d]) for head, d in zip(self.heads, self.dims, strict=True)]


def make_optimizer(heads: HeadGrid, lr_scale: float, momentum: float = 0.9) -> torch.optim.SGD:
    """One SGD with a parameter group per head (its own scaled lr and weight decay)."""
    groups = [
        {
            "params": list(head.parameters()),
            "lr": spec.lr * lr_scale,
            "base_lr": spec.lr * lr_scale,
            "weight_decay": spec.wd,
        }
        for head, spec in zip(heads.heads, heads.grid, strict=True)
    ]
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum)


def set_epoch_lr(optimizer: torch.optim.Optimizer, epoch: int, epochs: int) -> None:
    """Cosine over epochs from each group's base lr to 0, constant within an epoch."""
    factor = 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor


def _all_reduce_grads(heads: nn.Module) -> None:
    """Average gradients across processes (the heads are replicated, the data sharded)."""
    world = dist.get_world_size()
    for p in heads.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def train_one_epoch(
    features_fn: Callable[[Tensor], Tensor],
    heads: HeadGrid,
    optimizer: torch.optim.Optimizer,
    loader: Iterable,
    device: torch.device,
    progress: bool = True,
    precision: str = "auto",
) -> float:
    """One pass over `loader` ((img, label, index) batches); returns the mean loss per head. The frozen
    features are computed under `precision` (pretrain.autocast), the heads train in fp32."""
    heads.train()
    distributed = dist.is_available() and dist.is_initialized()
    total, steps = 0.0, 0
    for images, labels, _ in tqdm(loader, desc="linear heads", disable=not progress, leave=False):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.no_grad(), autocast(device, precision):
            feats = features_fn(images).float()  # (B, F_widest), frozen
        # Heads are independent, so the sum's gradient is each head's own gradient.
        loss = sum(F.cross_entropy(logits, labels) for logits in heads(feats))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if distributed:
            _all_reduce_grads(heads)
        optimizer.step()
        total += loss.item() / len(heads.heads)
        steps += 1
    return total / max(steps, 1)


@torch.no_grad()
def evaluate_heads(heads: HeadGrid, features: Tensor, labels: Tensor, chunk: int = 4096) -> list[tuple[float, float]]:
    """(top1 %, top5 %) of every head on precomputed features (N, F_widest) and labels (N,)."""
    heads.eval()
    device = next(heads.parameters()).device
    top1 = torch.zeros(len(heads.heads))
    top5 = torch.zeros(len(heads.heads))
    for start in range(0, features.shape[0], chunk):
        x = features[start : start + chunk].to(device)  # (b, F)
        y = labels[start : start + chunk].to(device).view(-1, 1)  # (b, 1)
        for i, logits in enumerate(heads(x)):
            ranked = logits.topk(min(5, logits.shape[1]), dim=1).indices  # (b, <=5)
            top1[i] += (ranked[:, :1] == y).sum().item()
            top5[i] += (ranked == y).sum().item()
    n = features.shape[0]
    return [(float(a) * 100.0 / n, float(b) * 100.0 / n) for a, b in zip(top1, top5, strict=True)]


class BestTracker:
    """Best val accuracy of every head over epochs, and the best head overall."""

    def __init__(self, num_heads: int):
        self.per_head = [{"top1": -1.0, "top5": -1.0, "epoch": -1} for _ in range(num_heads)]
        self.best = {"head": -1, "top1": -1.0, "top5": -1.0, "epoch": -1}

    def update(self, accs: list[tuple[float, float]], epoch: int) -> bool:
        """Record an epoch; True when its best head is at least as good as the best so far."""
        for rec, (a1, a5) in zip(self.per_head, accs, strict=True):
            if a1 > rec["top1"]:
                rec.update(top1=a1, top5=a5, epoch=epoch)
        head = max(range(len(accs)), key=lambda i: (accs[i][0], -i))
        if accs[head][0] >= self.best["top1"]:
            self.best = {"head": head, "top1": accs[head][0], "top5": accs[head][1], "epoch": epoch}
            return True
        return False

    def state_dict(self) -> dict:
        """Plain-typed state for the resumable checkpoint."""
        return {"per_head": self.per_head, "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""
        self.per_head, self.best = state["per_head"], state["best"]
