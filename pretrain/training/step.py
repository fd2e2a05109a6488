"""The iBOT training step in named pieces: teacher targets, student outputs, loss, update, EMA.

Reference §1.5-§1.8: AdamW over two parameter groups (biases and 1-D tensors undecayed), per-step
lr / wd / teacher-momentum schedules, per-parameter gradient clipping, last layer frozen during the
first `freeze_last_layer` epochs, teacher = EMA of the student over the parameters they share.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from plumbing import LossDivergedError, all_reduce_mean, autocast

from ..config import TrainConfig
from ..data.fastaug import prepare_batch
from ..models.backbones import build_backbone, is_swin
from ..models.head import IBOTHead
from ..objective.loss import IBOTLoss, MaskedPatches, koleo_loss
from ..objective.schedules import cosine_schedule


class IBOTModel(nn.Module):
    """Backbone + head; state-dict keys `backbone.*` / `head.*` as in the authors' checkpoints."""

    def __init__(self, backbone: nn.Module, head: IBOTHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(
        self,
        global_crops: Tensor,
        masks: Tensor | None = None,
        local_crops: Tensor | None = None,
        packed: bool = False,
    ):
        """Student: (cls (G*B, K), patch (G*B, N, K2)), local cls (L*B, K) or None.

        Patch logits are computed for masked tokens only (the loss weighs the others by zero) and
        scattered into zeros, or with `packed` returned as `MaskedPatches` (no (G*B, N, K2) tensor),
        followed by a third output, the global crops' backbone [CLS] features (G*B, D); local crops go
        through the head's [CLS] path only.
        """
        flat = masks.flatten(1)  # (G*B, N)
        features, masked = self._cls_and_patches(global_crops, masks, flat)  # (G*B, D), (M, D)
        cls_rows = features
        if local_crops is not None:
            cls_rows = torch.cat([features, self._cls_and_patches(local_crops)[0]])
        cls, picked = self.head.forward_student(cls_rows, masked)  # ((G+L)*B, K), (M, K2): one head call
        cls, local_cls = cls[: len(features)], (cls[len(features) :] if local_crops is not None else None)
        if packed:  # the loop also gets the backbone's global [CLS] features (for the optional KoLeo term)
            return (cls, MaskedPatches(picked)), local_cls, features
        patch = picked.new_zeros(*flat.shape, picked.shape[-1]).index_put((flat,), picked)
        return (cls, patch), local_cls

    def _cls_and_patches(self, crops: Tensor, masks: Tensor | None = None, keep: Tensor | None = None):
        """Backbone [CLS] features and the patch features at `keep`; a ViT skips the last block's
        projection and MLP for the tokens nobody reads (-4% of the step's products at ViT-S/16)."""
        if hasattr(self.backbone, "forward_cls_and_patches"):
            return self.backbone.forward_cls_and_patches(crops, masks, keep)
        tokens = self.backbone(crops, masks)
        return tokens[:, 0], (tokens[:, 1:][keep] if keep is not None else None)


def backbone_kwargs(cfg: TrainConfig) -> tuple[dict, dict]:
    """`build_backbone` kwargs of the student and of the teacher (no mask token, no drop-path).

    ViT students take `drop_path`; Swin students keep their size's default (0.1 tiny, 0.2 small/base)
    and take `window_size`, as the authors (reference §1.3). `arch_kwargs` overrides come last.
    """
    kw = {"patch_size": cfg.patch_size, "img_size": cfg.global_crop_size}
    if cfg.depth:
        kw["depth"] = cfg.depth
    student = {"drop_path_rate": cfg.drop_path_rate}
    if is_swin(cfg.arch):
        kw["window_size"], student = cfg.window_size, {}
    kw.update(cfg.arch_kwargs)
    return {**student, **kw}, {**kw, "drop_path_rate": 0.0, "use_mask_token": False}


def build_models(cfg: TrainConfig) -> tuple[IBOTModel, IBOTModel]:
    """Student (mask token, drop-path) and teacher (neither), teacher initialised from the student."""
    s_kw, t_kw = backbone_kwargs(cfg)
    head_kw = dict(
        out_dim=cfg.out_dim,
        patch_out_dim=cfg.patch_out_dim,
        shared_head=cfg.shared_head,
        hidden_dim=cfg.head_hidden_dim,
        bottleneck_dim=cfg.head_bottleneck_dim,
    )
    s_backbone = build_backbone(cfg.arch, **s_kw)
    student = IBOTModel(s_backbone, IBOTHead(s_backbone.embed_dim, norm_last_layer=cfg.norm_last_layer, **head_kw))
    t_backbone = build_backbone(cfg.arch, **t_kw)
    teacher = IBOTModel(t_backbone, IBOTHead(t_backbone.embed_dim, **head_kw))
    own = teacher.state_dict()
    teacher.load_state_dict({k: v for k, v in student.state_dict().items() if k in own}, strict=True)
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


def build_loss(cfg: TrainConfig) -> IBOTLoss:
    return IBOTLoss(
        cfg.out_dim,
        cfg.out_dim if cfg.shared_head else cfg.patch_out_dim,
        cfg.global_crops_number,
        cfg.local_crops_number,
        cfg.warmup_teacher_temp,
        cfg.teacher_temp,
        cfg.warmup_teacher_patch_temp,
        cfg.teacher_patch_temp,
        cfg.warmup_teacher_temp_epochs,
        cfg.epochs,
        lambda1=cfg.lambda1,
        lambda2=cfg.lambda2,
        mim_start_epoch=cfg.pred_start_epoch,
        centering=cfg.centering,
    )


def param_groups(model: nn.Module) -> list[dict]:
    """Biases and 1-D tensors get no weight decay; everything else (cls_token, pos_embed, ...) does."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if name.endswith(".bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class Schedules:
    lr: np.ndarray
    wd: np.ndarray
    momentum: np.ndarray


def build_schedules(cfg: TrainConfig, iters_per_epoch: int, world: int) -> Schedules:
    peak = cfg.lr * cfg.batch_size_per_gpu * world / 256.0  # linear scaling rule
    e, n = cfg.epochs, iters_per_epoch
    return Schedules(
        lr=cosine_schedule(peak, cfg.min_lr, e, n, warmup_epochs=cfg.warmup_epochs),
        wd=cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, e, n),
        momentum=cosine_schedule(cfg.momentum_teacher, 1.0, e, n),
    )


@torch.no_grad()
def teacher_targets(teacher: IBOTModel, global_crops: Tensor, masks: Tensor | None = None):
    """Teacher logits on the unmasked global crops: (G*B, K), (G*B, N, K2); given the student's
    masks (G*B, h, w), the patch part is `MaskedPatches` (what the loss reads, nothing more)."""
    tokens = teacher.backbone(global_crops)
    if masks is None:
        return teacher.head(tokens)
    return teacher.head.forward_masked(tokens, masks.flatten(1))


def clip_per_parameter(params: list[nn.Parameter], clip: float) -> None:
    """Scale each gradient to norm <= clip (not a global norm), reference §1.8."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or clip <= 0:
        return
    norms = torch.stack(torch._foreach_norm(grads))  # one kernel per step below, not one per parameter
    coefs = torch.clamp(clip / (norms + 1e-6), max=1.0)
    torch._foreach_mul_(grads, list(coefs.unbind()))


def cancel_last_layer_grads(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


@torch.no_grad()
def ema_update(teacher: nn.Module, pairs: list[tuple[Tensor, Tensor]], m: float) -> None:
    """theta_t <- m * theta_t + (1 - m) * theta_s over the parameters both models have."""
    t, s = zip(*pairs, strict=True)
    torch._foreach_mul_(list(t), m)
    torch._foreach_add_(list(t), list(s), alpha=1.0 - m)


def ema_pairs(student: nn.Module, teacher: nn.Module) -> list[tuple[Tensor, Tensor]]:
    s_params = dict(student.named_parameters())
    return [(p, s_params[n].detach()) for n, p in teacher.named_parameters() if n in s_params]


def check_finite(loss: Tensor | float, step: int) -> None:
    value = float(loss)
    if not math.isfinite(value):
        raise LossDivergedError(f"loss is {value} at step {step}; stopping (the last good checkpoint is kept)")


class StepParts(Protocol):
    """What one iBOT update reads: the plain loop's `TrainingRun` and the Lightning module both hold these."""

    cfg: TrainConfig
    student: nn.Module
    teacher: nn.Module
    loss_fn: nn.Module
    params: list[nn.Parameter]
    pairs: list[tuple[Tensor, Tensor]]
    sched: Schedules


def ibot_update(
    parts: StepParts,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Any,
    it: int,
    epoch: int,
    device: torch.device,
    precision: str,
    backward: Callable[[Tensor], None] = Tensor.backward,
) -> dict[str, float]:
    """One iBOT update at global step `it`: scheduled lr/wd, teacher targets, student outputs, loss (and
    KoLeo when asked), backward (`backward`: Lightning's `manual_backward` lets DDP reduce), per-parameter
    clipping, last-layer freezing, optimizer step, EMA with the scheduled momentum. `model` is the student
    or its DDP wrapper. Returns the losses as means over processes."""
    cfg = parts.cfg
    G = cfg.global_crops_number
    # (G*B, 3, H, W) and (L*B, 3, h, w) crop-major, G x (B, h/p, w/p); the fast loader's colour ops run here
    global_crops, local_crops, masks = prepare_batch(batch, G, device)
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = float(parts.sched.lr[it])
        if i == 0:
            group["weight_decay"] = float(parts.sched.wd[it])
    with autocast(device, precision):
        flat_masks = torch.cat(masks)  # (G*B, h, w)
        t_out = teacher_targets(parts.teacher, global_crops, flat_masks)
        s_out, s_local, s_features = model(global_crops, flat_masks, local_crops, packed=True)
        losses = parts.loss_fn(s_out, t_out, s_local, masks, epoch)
        if cfg.koleo_weight:  # DINOv2's KoLeo on each global crop's [CLS] features (not in the paper)
            koleo = torch.stack([koleo_loss(f) for f in s_features.chunk(G)]).mean()
            losses["koleo"] = koleo
            losses["loss"] = losses["loss"] + cfg.koleo_weight * koleo
    optimizer.zero_grad(set_to_none=True)
    backward(losses["loss"])
    clip_per_parameter(parts.params, cfg.clip_grad)
    if epoch < cfg.freeze_last_layer:
        cancel_last_layer_grads(parts.student)
    optimizer.step()
    ema_update(parts.teacher, parts.pairs, float(parts.sched.momentum[it]))
    keys = sorted(losses)  # logged values are means over all processes (= the global-batch loss)
    values = all_reduce_mean(torch.stack([losses[k].detach().float() for k in keys])).tolist()
    # the step's one host sync. A non-finite loss stops the run here, before anything is saved; the value is
    # the mean over processes, so under DDP every rank stops at the same step
    check_finite(values[keys.index("loss")], it)
    return dict(zip(keys, values, strict=True))
