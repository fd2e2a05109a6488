"""Detector files: self-describing, read with `weights_only=True`, loaded strictly.

- `checkpoint.pth` (format `ibot-suite/detector-training`): weights, optimizer, epoch, history;
  resumes training exactly.
- `detector.pth` (format `ibot-suite/detector`): weights only.
Both hold the backbone's architecture kwargs, the `DetectorSpec`, the category ids and names and the
resolved config as plain dicts, so `python -m detection.eval checkpoint=FILE` needs no other flag.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pretrain import CheckpointError, ConfigError, atomic_save, build_backbone, load_backbone, safe_load, to_plain

from .config import DETECTORS, DetectionConfig, DetectorSpec
from .data import CocoInstances
from .model import build_detector

FORMAT_TRAINING = "ibot-suite/detector-training"
FORMAT_DETECTOR = "ibot-suite/detector"


def vit_for_detection(path: str | Path, key: str, drop_path_rate: float) -> tuple[nn.Module, dict]:
    """The pre-trained ViT or Swin from any file `load_backbone` reads, rebuilt with the detection drop-path rate."""
    vit, info = load_backbone(path, key)
    fresh = build_backbone(info["arch"], **{**vit.arch_kwargs(), "drop_path_rate": drop_path_rate})
    fresh.load_state_dict(vit.state_dict(), strict=True)
    return fresh, info


def check_spec(spec: DetectorSpec) -> None:
    if spec.detector not in DETECTORS:
        raise ConfigError(f"unknown detector {spec.detector!r}; valid: {', '.join(DETECTORS)}")


def build_from_config(cfg: DetectionConfig, train_set: CocoInstances, bf16: bool = False) -> tuple[nn.Module, str]:
    """Detector for `train_set`'s categories on the pre-trained backbone named by `cfg.backbone`,
    and the backbone's registry name."""
    check_spec(cfg.model)
    if not cfg.backbone:
        raise FileNotFoundError("no backbone given: set backbone=PATH (an exported backbone or checkpoint)")
    vit, info = vit_for_detection(cfg.backbone, cfg.backbone_key, cfg.drop_path_rate)
    return build_detector(vit, cfg.model, train_set.num_classes, bf16), info["arch"]


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
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"{path}: detector weights do not fit: missing {missing[:10]}, unexpected {unexpected[:10]}, "
            f"mis-shaped {sorted(shapes)[:10]}"
        )
    model.load_state_dict(state, strict=True)


def load_training(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict]]:
    """Restore weights and optimizer from a training checkpoint; returns (epochs done, history)."""
    ckpt = safe_load(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_TRAINING:
        raise CheckpointError(f"{path}: not a detection training checkpoint")
    _load_weights(model, ckpt["model"], path)
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"]), list(ckpt.get("history", []))


def load_detector(path: str | Path, map_location: Any = "cpu", bf16: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """Detector (eval mode) from `detector.pth` or `checkpoint.pth`, and the file's metadata."""
    path = Path(path)
    ckpt = safe_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (FORMAT_DETECTOR, FORMAT_TRAINING):
        raise CheckpointError(f"{path}: not a detector file written by python -m detection")
    fields = {f.name for f in dataclasses.fields(DetectorSpec)}
    if set(ckpt["spec"]) - fields:
        raise CheckpointError(f"{path}: unknown detector settings {sorted(set(ckpt['spec']) - fields)}")
    spec = DetectorSpec(**ckpt["spec"])
    vit = build_backbone(ckpt["arch"], **ckpt["backbone_kwargs"])
    model = build_detector(vit, spec, len(ckpt["cat_ids"]), bf16)
    _load_weights(model, ckpt["model"], path)
    meta = {k: v for k, v in ckpt.items() if k not in ("model", "optimizer")}
    return model.eval(), meta
