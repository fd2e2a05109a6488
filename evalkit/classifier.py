"""The one classifier file format and its loader: linear-probe heads and fine-tuned classifiers.

A classifier is `images (B, 3, H, W), ImageNet-normalised -> logits (B, C)` with a `backbone`
attribute. Two kinds of file, both tensors and plain types only (read with weights_only=True):
- a linear-probe head (`python -m eval_linear`): the feature recipe, `n_last_blocks` and the Linear
  weights; it needs the backbone it was trained on (`FrozenClassifier`);
- a fine-tuned classifier (`python -m finetune`): backbone kwargs and weights, the optional
  projection (semi-supervised start: the iBOT head's first Linear + GELU) and the Linear classifier,
  on [CLS] after the final norm (Swin: the average of the final normed tokens) (`CLSClassifier`).
`load_classifier` reads either; every tool that takes a classifier goes through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from plumbing import CheckpointError, ConfigError
from pretrain import arch_name, atomic_save, build_backbone, load_backbone, safe_load

from .features import block_widths, feature_fn, recipe_dim

LINEAR_HEAD_FORMAT = "ibot-suite/linear-head"
FINETUNED_FORMAT = "ibot-suite/finetuned-classifier"
# files of the suite that are not classifiers, named in the error when one is given as a classifier
OTHER_FORMATS = {
    "ibot-suite/backbone": "an exported backbone (give it as pretrained=)",
    "ibot-suite/training-checkpoint": "a pre-training checkpoint (give it as pretrained=)",
    "ibot-suite/detector": "a detector (python -m detection.eval detector=)",
    "ibot-suite/detector-training": "a detector training checkpoint (python -m detection.eval detector=)",
}
HEAD_INIT_SCALE = 0.001  # fine-tuning: trunc-normal(0.02) head, weight and bias scaled by 0.001 (reference §3.5)


class FrozenClassifier(nn.Module):
    """A frozen backbone, a feature recipe and a linear head: images (B, 3, H, W) -> logits (B, C)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear, recipe: str, n_last_blocks: int):
        super().__init__()
        self.backbone, self.head = backbone, head
        self.features = feature_fn(backbone, recipe, n_last_blocks)
        self.recipe, self.n_last_blocks = recipe, n_last_blocks

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


class CLSClassifier(nn.Module):
    """images (B, 3, H, W) -> logits (B, C): backbone [CLS] (after the final norm) -> [proj + GELU] -> Linear.

    A new head is trunc-normal(0.02) initialised and scaled by `HEAD_INIT_SCALE` (the fine-tuning recipe).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, proj: nn.Linear | None = None):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Sequential(proj, nn.GELU()) if proj is not None else None  # (B, D) -> (B, hidden)
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
        return self.head(self.features(x))


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def save_linear_head(path: str | os.PathLike, head: nn.Linear, recipe: str, n_last_blocks: int, meta: dict) -> None:
    """Write a linear probe head with its feature recipe."""
    payload = {
        "format": LINEAR_HEAD_FORMAT,
        "recipe": recipe,
        "n_last_blocks": n_last_blocks,
        "in_dim": head.in_features,
        "num_classes": head.out_features,
        "state_dict": _cpu_state(head),
        "meta": dict(meta),
    }
    atomic_save(payload, path)


def save_finetuned(path: str | os.PathLike, model: CLSClassifier, meta: dict[str, Any]) -> None:
    """Write backbone kwargs + weights, optional projection, classifier and feature recipe."""
    payload = {
        "format": FINETUNED_FORMAT,
        "format_version": 1,
        "arch": arch_name(model.backbone),
        "backbone_kwargs": model.backbone.arch_kwargs(),
        "backbone": _cpu_state(model.backbone),
        "feature": "cls",  # [CLS] after the final norm (Swin: the average of the final normed tokens)
        "proj": _cpu_state(model.proj[0]) if model.proj is not None else None,
        "classifier": _cpu_state(model.head),
        "num_classes": model.head.out_features,
        "meta": dict(meta),
    }
    atomic_save(payload, path)


def _linear_head(ckpt: dict, path: str | os.PathLike, backbone: nn.Module) -> FrozenClassifier:
    n = ckpt["n_last_blocks"]
    if n > backbone.depth:
        raise CheckpointError(
            f"{path}: this head reads the last {n} blocks but the backbone has {backbone.depth}: "
            f"give the backbone it was trained on"
        )
    expected = recipe_dim(ckpt["recipe"], block_widths(backbone), n)
    if expected != ckpt["in_dim"]:
        raise CheckpointError(
            f"{path}: head expects {ckpt['in_dim']}-d features but this backbone gives {expected}-d "
            f"({ckpt['recipe']}, n_last_blocks={n}): give the backbone it was trained on"
        )
    head = nn.Linear(ckpt["in_dim"], ckpt["num_classes"])
    head.load_state_dict(ckpt["state_dict"], strict=True)
    return FrozenClassifier(backbone, head, ckpt["recipe"], n)


def _finetuned(ckpt: dict, path: str | os.PathLike) -> CLSClassifier:
    if ckpt.get("format_version", 1) != 1:
        raise CheckpointError(f"{path}: fine-tuned classifier format version {ckpt['format_version']} is not 1")
    backbone = build_backbone(ckpt["arch"], **ckpt["backbone_kwargs"])
    proj = None
    if ckpt.get("proj") is not None:
        hidden, in_dim = ckpt["proj"]["weight"].shape
        proj = nn.Linear(in_dim, hidden)
    model = CLSClassifier(backbone, ckpt["num_classes"], proj)
    weights = {f"backbone.{k}": v for k, v in ckpt["backbone"].items()}
    weights.update({f"head.{k}": v for k, v in ckpt["classifier"].items()})
    if proj is not None:
        weights.update({f"proj.0.{k}": v for k, v in ckpt["proj"].items()})
    try:
        model.load_state_dict(weights, strict=True)
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{path}: the weights do not fit the stored architecture: {e}") from None
    return model


def _looks_like_weights(ckpt: object) -> bool:
    """The authors' files and plain state dicts: tensors under `student`/`teacher`/`state_dict` or at the top."""
    if not isinstance(ckpt, dict):
        return False
    return any(k in ckpt for k in ("student", "teacher", "state_dict", "model")) or any(
        isinstance(v, torch.Tensor) for v in ckpt.values()
    )


def classifier_kind(path: str | os.PathLike) -> str:
    """`linear` or `finetuned` for a classifier file; a CheckpointError for anything else."""
    ckpt = safe_load(path)
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    kinds = {LINEAR_HEAD_FORMAT: "linear", FINETUNED_FORMAT: "finetuned"}
    if fmt not in kinds:
        what = OTHER_FORMATS.get(fmt) or (
            "a backbone or training checkpoint (give it as pretrained=)"
            if _looks_like_weights(ckpt)
            else "not a classifier"
        )
        raise CheckpointError(
            f"{path} is {what}: classifier= takes a linear head (eval_linear's linear_head_best.pth) or a "
            f"fine-tuned classifier (finetune's classifier.pth)"
        )
    return kinds[fmt]


def load_classifier(
    path: str | os.PathLike,
    backbone: nn.Module | str | os.PathLike | None = None,
    key: str = "teacher",
) -> tuple[nn.Module, dict]:
    """A linear head (+ its backbone: a module or any file `load_backbone` reads) or a fine-tuned
    classifier file -> (classifier in eval mode, info).

    `info` holds `kind` (linear | finetuned), `num_classes`, `classes` (names, or None), `image_size`
    (or None), `meta` (what the training recorded) and, for a linear head, `recipe`, `n_last_blocks`.
    """
    if not path or not Path(path).is_file():
        raise CheckpointError(f"classifier file not found: {str(path)!r}")
    ckpt = safe_load(path)
    kind = classifier_kind(path)
    info: dict[str, Any] = {"kind": kind}
    if kind == "finetuned":
        model: nn.Module = _finetuned(ckpt, path)
        info.update(arch=ckpt["arch"], feature=ckpt.get("feature", "cls"))
    else:
        if backbone is None or backbone == "":
            raise ConfigError(f"{path} is a linear head: give the backbone it was trained on (pretrained=PATH)")
        if not isinstance(backbone, nn.Module):
            backbone, info["backbone"] = load_backbone(backbone, key)
        model = _linear_head(ckpt, path, backbone)
        info.update(recipe=ckpt["recipe"], n_last_blocks=ckpt["n_last_blocks"], in_dim=ckpt["in_dim"])
    meta = dict(ckpt.get("meta", {}))
    info.update(
        meta=meta,
        num_classes=int(ckpt["num_classes"]),
        classes=list(meta["classes"]) if meta.get("classes") else None,
        image_size=int(meta["image_size"]) if meta.get("image_size") else None,
    )
    return model.eval(), info
