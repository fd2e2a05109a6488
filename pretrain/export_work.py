"""The work of `python -m pretrain.export`: `run_export(cfg)` reads a checkpoint and writes its backbone.

It reads any file `load_backbone` reads (the suite's backbone files and training checkpoints, the
authors' full checkpoints and backbone files, DINO-style and timm state dicts, safetensors) and writes
the backbone, with the iBOT head when asked, into `cfg.output_dir` as

    suite        backbone.pth: the suite's backbone file (torch, tensors and plain types only)
    safetensors  backbone.safetensors: the same content (read back by load_backbone / load_head)
    hf           output_dir itself becomes a Hugging Face transformers ViTModel folder (config.json +
                 model.safetensors; ViT only)
    timm         backbone_timm.pth: a timm state dict, and backbone_timm.json, the spec for
                 timm.create_model(..., pretrained=True)

(`name=` picks another file name inside `output_dir`.) A folder that cannot be written is one line naming
the file (never a temporary name); a full disk one line with its free space (exit 1). `pretrained` may be
a format=hf folder the suite wrote: it is read back exactly.
"""

from __future__ import annotations

import torch

from plumbing import ConfigError, disk_full_message

from .checkpoints.loading import load_backbone, load_head
from .checkpoints.saving import export_backbone
from .config import ExportConfig


def run_export(cfg: ExportConfig) -> dict:
    """Load `cfg.pretrained` and write it as `cfg.format` at `cfg.target()`; returns what was written."""
    backbone, info = load_backbone(cfg.pretrained, key=cfg.checkpoint_key)
    head = load_head(cfg.pretrained, key=cfg.checkpoint_key)[0] if cfg.with_head else None
    source = {"source": info["path"], "source_format": info["format"], "checkpoint_key": info["key"]}
    meta = {k: v for k, v in {**source, "epoch": info["epoch"]}.items() if v is not None}
    if cfg.dtype != "fp32":  # floating weights only; load_backbone / load_head copy them into fp32 modules
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
        backbone, head = backbone.to(dtype), head.to(dtype) if head is not None else None
        meta["stored_dtype"] = cfg.dtype
    target = cfg.target()
    try:
        export_backbone(backbone, target, head=head, meta=meta, format=cfg.format)
    except OSError as e:
        if disk_full_message(e) is not None:
            raise  # a full disk: one line naming the file and the free space, exit 1 (plumbing.run_command)
        raise ConfigError(f"cannot write {target}: {e.strerror or e}; choose another output_dir") from None
    return {"arch": info["arch"], "source_format": info["format"], "output": str(target), "head": head is not None}
