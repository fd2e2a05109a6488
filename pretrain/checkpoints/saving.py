"""Writing backbone files: atomic writes that respect the umask, and `export_backbone` in four formats.

The suite and safetensors files are read back by `pretrain.checkpoints.loading` (`load_backbone`, `load_head`);
the Hugging Face folder and the timm file are for those libraries.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from plumbing import atomic_write

from ..config import EXPORT_FORMATS, FORMAT_BACKBONE
from ..models.backbones import arch_name
from ..models.head import IBOTHead
from . import safetensors_io


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` through `atomic_write`."""
    atomic_write(path, lambda f: torch.save(obj, f))


def export_backbone(
    backbone: nn.Module,
    path: str | os.PathLike,
    head: IBOTHead | None = None,
    meta: dict | None = None,
    format: str = "suite",
    pretrained_cfg: dict | None = None,
) -> None:
    """Write `backbone` (+ `head`) for `load_backbone`/`load_head` or for another library.

    format: `suite` (torch file, tensors and plain types only) or `safetensors` (the same content, the
    description in the metadata) are read back by `load_backbone`/`load_head`; `hf` writes a Hugging
    Face `ViTModel` folder (ViT only, see `hf_export.export_hf`); `timm` a timm state dict plus the
    `pretrained_cfg` to load it (`pretrained_cfg` entries override it; see `timm_export.export_timm`).
    The last two hold the backbone only.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid: {', '.join(EXPORT_FORMATS)}")
    if head is not None and format in ("hf", "timm"):
        raise ValueError(f"format={format} holds the backbone only; export the head with format=suite or safetensors")
    if format == "hf":
        from .hf_export import export_hf

        export_hf(backbone, path, meta)
        return
    if format == "timm":
        from .timm_export import export_timm

        export_timm(backbone, path, pretrained_cfg, meta)
        return
    payload: dict[str, Any] = {
        "format": FORMAT_BACKBONE,
        "format_version": 1,
        "arch": arch_name(backbone),
        "backbone_kwargs": backbone.arch_kwargs(),
        "backbone": _cpu_state(backbone),
        "meta": dict(meta or {}),
    }
    if head is not None:
        payload["head_kwargs"] = dict(head.kwargs)
        payload["head"] = _cpu_state(head)
    if format == "safetensors":
        data = safetensors_io.backbone_bytes(payload)
        atomic_write(path, lambda f: f.write(data))
    else:
        atomic_save(payload, path)


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
