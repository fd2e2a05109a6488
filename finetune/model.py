"""The fine-tuned classifier, its layer-decay parameter groups and its self-describing file.

Reference §3.5 / §5 item 19: the classifier input is [CLS] after the final LayerNorm (not mean
pooling); the Linear head is trunc-normal(0.02) initialised, then weight and bias are scaled by
0.001. Layer ids follow BEiT (embeddings 0, block i -> i + 1, everything else L + 1) with
lr scale = decay^(L + 1 - id); biases, 1-D tensors, `pos_embed` and `cls_token` get no weight decay.
The semi-supervised start keeps the iBOT head's first Linear + GELU between [CLS] and the classifier.

Swin backbones (reference §5 item 24): the classifier input is the pseudo-[CLS] of
`forward_features`, the average of the final-stage tokens after the final LayerNorm (the avgpool of
Swin's own fine-tuning); layer ids come from the backbone's `layer_id` (blocks of all stages, patch
merging with the block before it) through `backbone_layer_id`.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from pretrain import (
    CheckpointError,
    arch_name,
    atomic_save,
    backbone_layer_id,
    build_backbone,
    layer_decay_param_groups,
    safe_load,
)

CLASSIFIER_FORMAT = "ibot-suite/finetuned-classifier"
HEAD_INIT_SCALE = 0.001
NO_WEIGHT_DECAY = ("backbone.pos_embed", "backbone.cls_token")


class FinetuneClassifier(nn.Module):
    """images (B, 3, H, W) -> logits (B, C): backbone [CLS] (after the final norm) -> [proj] -> Linear.

    For Swin the [CLS] is the average of the final normed tokens (its `forward_features` puts it first).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, proj: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        # Semi-supervised start: the projection head's first layer, (B, D) -> (B, hidden).
        self.proj = nn.Sequential(proj, nn.GELU()) if proj is not None else None
        in_dim = proj.out_features if proj is not None else backbone.embed_dim
        self.head = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(HEAD_INIT_SCALE)
            self.head.bias.mul_(HEAD_INIT_SCALE)

    def features(self, x: Tensor) -> Tensor:
        """The classifier input, (B, D) or (B, hidden)."""
        cls = self.backbone.forward_features(x)[:, 0]  # (B, D), after the final LayerNorm (Swin: token mean)
        return self.proj(cls) if self.proj is not None else cls

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) -> logits (B, C)."""
        return self.head(self.features(x))


def with_drop_path(backbone: nn.Module, drop_path_rate: float, arch: str | None = None) -> nn.Module:
    """A copy of `backbone` (ViT or Swin) rebuilt with stochastic depth 0 -> `drop_path_rate`, same weights.

    `arch` only names the registry entry (None: `arch_name(backbone)`); the stored constructor kwargs
    fix the size.
    """
    rebuilt = build_backbone(arch or arch_name(backbone), **backbone.arch_kwargs(), drop_path_rate=drop_path_rate)
    rebuilt.load_state_dict(backbone.state_dict(), strict=True)
    return rebuilt


def first_head_layer(head: nn.Module) -> nn.Linear:
    """The iBOT projection head's first Linear (D -> hidden), copied; its GELU follows in the model."""
    first = head.mlp[0] if isinstance(head.mlp, nn.Sequential) else None
    if not isinstance(first, nn.Linear) or len(head.mlp) < 2:
        raise CheckpointError("start_from=head_layer1 needs an iBOT head with at least 2 MLP layers")
    layer = nn.Linear(first.in_features, first.out_features)
    layer.load_state_dict(first.state_dict())
    return layer


def build_model(
    backbone: nn.Module,
    num_classes: int,
    drop_path_rate: float = 0.0,
    head: nn.Module | None = None,
    arch: str | None = None,
) -> FinetuneClassifier:
    """Fine-tuning model from a loaded backbone (and the iBOT head for the head_layer1 start)."""
    model = FinetuneClassifier(
        with_drop_path(backbone, drop_path_rate, arch), num_classes, first_head_layer(head) if head else None
    )
    masked = getattr(model.backbone, "masked_embed", None)
    if masked is not None:  # the mask token is unused without masks; DDP rejects unused trainables
        masked.requires_grad_(False)
    return model.train()


def param_groups(model: FinetuneClassifier, layer_decay: float, weight_decay: float) -> list[dict]:
    """AdamW groups with `lr_scale` per BEiT layer id (the backbone's own rule) and the weight-decay exemptions."""
    return layer_decay_param_groups(
        model.named_parameters(),
        depth=model.backbone.depth,
        layer_decay=layer_decay,
        weight_decay=weight_decay,
        backbone_prefix="backbone.",
        no_decay_names=NO_WEIGHT_DECAY,
        layer_id=backbone_layer_id(model.backbone),
    )


# ------------------------------------------------------------------------------- the file
def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_classifier(path: str | os.PathLike, model: FinetuneClassifier, arch: str, meta: dict[str, Any]) -> None:
    """Write backbone kwargs + weights, optional projection, classifier and feature recipe (plain types)."""
    payload = {
        "format": CLASSIFIER_FORMAT,
        "format_version": 1,
        "arch": arch,
        "backbone_kwargs": model.backbone.arch_kwargs(),
        "backbone": _cpu_state(model.backbone),
        "feature": "cls",  # [CLS] after the final norm (Swin: the average of the final normed tokens)
        "proj": _cpu_state(model.proj[0]) if model.proj is not None else None,
        "classifier": _cpu_state(model.head),
        "num_classes": model.head.out_features,
        "meta": dict(meta),
    }
    atomic_save(payload, path)


def load_classifier(path: str | os.PathLike) -> FinetuneClassifier:
    """The fine-tuned classifier written by `python -m finetune` (eval mode; images -> logits).

    The file's `meta` (classes, image_size, mean/std, crop_pct, accuracy) is kept as `model.meta`.
    """
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path}: not a fine-tuned classifier file (written by python -m finetune)")
    backbone = build_backbone(ckpt["arch"], **ckpt["backbone_kwargs"])
    proj = None
    if ckpt["proj"] is not None:
        hidden, in_dim = ckpt["proj"]["weight"].shape
        proj = nn.Linear(in_dim, hidden)
    model = FinetuneClassifier(backbone, ckpt["num_classes"], proj)
    weights = {f"backbone.{k}": v for k, v in ckpt["backbone"].items()}
    weights.update({f"head.{k}": v for k, v in ckpt["classifier"].items()})
    if ckpt["proj"] is not None:
        weights.update({f"proj.0.{k}": v for k, v in ckpt["proj"].items()})
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the stored architecture: {e}") from None
    model.meta = dict(ckpt.get("meta", {}))
    return model.eval()
