"""Detector files: self-describing, read with `weights_only=True`, loaded strictly.

- `checkpoint.pth` (format `ibot-suite/detector-training`): weights, optimizer, epoch, history;
  resumes training exactly.
- `detector.pth` (format `ibot-suite/detector`): weights only.
Both hold the backbone's architecture kwargs, the `DetectorSpec`, the category ids and names and the
resolved config as plain dicts, so `python -m detection.eval detector=FILE` needs no other flag.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evalkit import FINETUNED_FORMAT, LINEAR_HEAD_FORMAT
from plumbing import CheckpointError, ConfigError, to_plain
from pretrain import arch_name, atomic_save, build_backbone, load_backbone, safe_load, with_drop_path

from .backbone import resize_pos_embed_at_load
from .config import DETECTORS, DetectionConfig, DetectorSpec
from .data import CocoInstances
from .model import build_detector

FORMAT_TRAINING = "ibot-suite/detector-training"
FORMAT_DETECTOR = "ibot-suite/detector"


def check_spec(spec: DetectorSpec) -> None:
    if spec.detector not in DETECTORS:
        raise ConfigError(f"unknown detector {spec.detector!r}; valid: {', '.join(DETECTORS)}")


def build_from_config(
    backbone: nn.Module, cfg: DetectionConfig, train_set: CocoInstances, precision: str = "fp32"
) -> tuple[nn.Module, str]:
    """Detector for `train_set`'s categories on a copy of the pre-trained `backbone` rebuilt with
    `cfg.drop_path_rate`, and the backbone's registry name. The caller seeds the heads' initialisation.
    With `model.resize_pos_embed` the copy's position table is resized to `model.pos_embed_size`'s grid first
    (the authors' load-time step); the detector files keep that table, so `load_detector` does not resize."""
    check_spec(cfg.model)
    vit = with_drop_path(backbone, cfg.drop_path_rate)
    if cfg.model.resize_pos_embed:
        resize_pos_embed_at_load(vit, cfg.model.pos_embed_size)
    return build_detector(vit, cfg.model, train_set.num_classes, precision), arch_name(vit)


def detector_payload(
    model: nn.Module, cfg: DetectionConfig, train_set: CocoInstances, arch: str, fmt: str
) -> dict[str, Any]:
    """Weights and everything needed to rebuild the detector (plain types only)."""
    vit = model.backbone.body  # the core ViT or Swin
    cats = train_set.coco.loadCats(train_set.cat_ids)
    return {
        "format": fmt,
        "format_version": 1,
        "arch": arch,
        "backbone_kwargs": vit.arch_kwargs(),
        "spec": to_plain(cfg.model),
        "cat_ids": [int(c) for c in train_set.cat_ids],
        "cat_names": [str(c["name"]) for c in cats],
        "config": to_plain(cfg),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def save_detector(model: nn.Module, cfg: DetectionConfig, train_set: CocoInstances, arch: str, path: Path) -> None:
    atomic_save(detector_payload(model, cfg, train_set, arch, FORMAT_DETECTOR), path)


def _load_weights(model: nn.Module, state: dict, path: Path) -> None:
    """Strict load; torch's error names every missing, unexpected and mis-shaped key."""
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the detector weights do not fit: {' '.join(str(e).split())}") from None


def load_training(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    """Restore weights and optimizer from a training checkpoint; returns (epochs done, history)."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_TRAINING:
        raise CheckpointError(f"{path}: not a detection training checkpoint")
    _load_weights(model, ckpt["model"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"]), list(ckpt.get("history", []))


def _not_a_detector(path: Path, ckpt: Any) -> str:
    """One line saying what the file is instead and what to pass."""
    fmt = ckpt.get("format") if isinstance(ckpt, dict) else None
    if fmt == LINEAR_HEAD_FORMAT:
        what = "a linear-probe head (python -m eval_linear)"
    elif fmt == FINETUNED_FORMAT:
        what = "a fine-tuned classifier (python -m finetune)"
    else:
        try:
            _, info = load_backbone(path)
        except CheckpointError:
            return f"{path}: not a detector file: give detector=PATH, a detector.pth written by python -m detection"
        what = f"a backbone file ({info['arch']}, format {info['format']})"
        return (
            f"{path} is {what}, not a detector: train one with python -m detection pretrained={path} "
            "data_path=COCO_ROOT, then give detector=OUTPUT_DIR/detector.pth"
        )
    return f"{path} is {what}, not a detector: give detector=PATH, a detector.pth written by python -m detection"


def load_detector(
    path: str | Path, map_location: Any = "cpu", precision: str = "fp32"
) -> tuple[nn.Module, dict[str, Any]]:
    """Detector (eval mode) from `detector.pth` or `checkpoint.pth`, and the file's metadata.

    Any other file (a backbone, a classifier) raises a CheckpointError saying what it is."""
    path = Path(path)
    ckpt = safe_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT_DETECTOR, FORMAT_TRAINING):
        raise CheckpointError(_not_a_detector(path, ckpt))
    fields = {f.name for f in dataclasses.fields(DetectorSpec)}
    if set(ckpt["spec"]) - fields:
        raise CheckpointError(f"{path}: unknown detector settings {sorted(set(ckpt['spec']) - fields)}")
    spec = DetectorSpec(**ckpt["spec"])
    vit = build_backbone(ckpt["arch"], **ckpt["backbone_kwargs"])
    model = build_detector(vit, spec, len(ckpt["cat_ids"]), precision)
    _load_weights(model, ckpt["model"], path)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return model.eval(), meta
