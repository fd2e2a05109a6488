"""`python -m pretrain.export pretrained=FILE format=... output=PATH`: extract and convert a backbone.

Reads any file `load_backbone` reads (the suite's backbone files and training checkpoints, the
authors' full checkpoints and backbone files, DINO-style and timm state dicts, safetensors) and writes
the backbone, with the iBOT head when asked, as

    suite        the suite's backbone file (torch, tensors and plain types only)
    safetensors  the same content as a safetensors file (read back by load_backbone / load_head)
    hf           a Hugging Face transformers ViTModel folder (config.json + model.safetensors; ViT only)
    timm         a timm state dict + a JSON spec beside it for timm.create_model(..., pretrained=True)

    python -m pretrain.export pretrained=checkpoint.pth checkpoint_key=teacher format=safetensors \\
        output=teacher.safetensors with_head=true

This module imports no torch until the config is parsed, so `--help` answers at once.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from plumbing import ConfigError, parse_config

FORMATS = ("suite", "safetensors", "hf", "timm")
KEYS = ("teacher", "student")
DTYPES = ("fp32", "fp16", "bf16")  # storage precision of the written weights


@dataclass
class ExportConfig:
    """Extract a backbone (and head) from a checkpoint and write it in another format."""

    pretrained: str = ""  # file to read: any file load_backbone reads (full training checkpoints included)
    checkpoint_key: str = "teacher"  # teacher | student: which network of a full training checkpoint
    format: str = "suite"  # suite | safetensors | hf (transformers ViTModel folder, ViT only) | timm
    output: str = ""  # file to write (a folder for format=hf; for timm the spec goes to its .json twin)
    with_head: bool = False  # also write the iBOT projection head (format=suite or safetensors only)
    dtype: str = "fp32"  # fp32 | fp16 | bf16: weights as stored (fp16 halves the file; loading casts back to fp32)
    overwrite: bool = False  # replace an existing output (otherwise an existing output is an error)

    def check(self) -> None:
        """Refuse bad values before anything is read."""
        if not self.pretrained:
            raise ConfigError("pretrained=FILE is required (the checkpoint or backbone file to convert)")
        if not Path(self.pretrained).is_file():
            raise ConfigError(f"checkpoint not found: pretrained={self.pretrained} (check the path)")
        if self.checkpoint_key not in KEYS:
            raise ConfigError(f"checkpoint_key={self.checkpoint_key!r}; valid: {', '.join(KEYS)}")
        if self.format not in FORMATS:
            raise ConfigError(f"format={self.format!r}; valid: {', '.join(FORMATS)}")
        if not self.output:
            raise ConfigError("output=PATH is required (the file, or the folder for format=hf, to write)")
        if self.with_head and self.format not in ("suite", "safetensors"):
            msg = f"with_head=true needs format=suite or safetensors; format={self.format} holds a backbone only"
            raise ConfigError(msg)
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype={self.dtype!r}; valid: {', '.join(DTYPES)}")
        if self.dtype != "fp32" and self.format not in ("suite", "safetensors"):
            raise ConfigError(f"dtype={self.dtype} needs format=suite or safetensors; format={self.format} stores fp32")
        out = Path(self.output)
        if out.exists() and not self.overwrite:
            raise ConfigError(f"output={self.output} exists: choose another output or pass overwrite=true")
        if self.format != "hf" and out.is_dir():
            raise ConfigError(f"output={self.output} is a folder; format={self.format} writes a file")
        if self.format == "timm" and out.suffix == ".json":
            raise ConfigError("output for format=timm needs a .pth or .safetensors name (the spec gets .json)")


def convert(cfg: ExportConfig) -> dict:
    """Load `cfg.pretrained` and write it as `cfg.format` at `cfg.output`; returns what was written."""
    from .checkpoint import export_backbone, load_backbone, load_head

    backbone, info = load_backbone(cfg.pretrained, key=cfg.checkpoint_key)
    head = load_head(cfg.pretrained, key=cfg.checkpoint_key)[0] if cfg.with_head else None
    source = {"source": info["path"], "source_format": info["format"], "checkpoint_key": info["key"]}
    meta = {k: v for k, v in {**source, "epoch": info["epoch"]}.items() if v is not None}
    if cfg.dtype != "fp32":  # floating weights only; load_backbone / load_head copy them into fp32 modules
        import torch

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[cfg.dtype]
        backbone, head = backbone.to(dtype), head.to(dtype) if head is not None else None
        meta["stored_dtype"] = cfg.dtype
    export_backbone(backbone, cfg.output, head=head, meta=meta, format=cfg.format)
    return {"arch": info["arch"], "source_format": info["format"], "output": str(cfg.output), "head": head is not None}


def main(argv: list[str] | None = None) -> int:
    """Parse, check, convert; a user error prints one line and returns 2."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        cfg = parse_config(ExportConfig, argv, prog="pretrain.export")
        cfg.check()
        done = convert(cfg)
    except Exception as e:
        from .checkpoint import CheckpointError

        if not isinstance(e, (ConfigError, CheckpointError, OSError, ValueError, ImportError)):
            raise
        print(f"pretrain.export: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    head = " + head" if done["head"] else ""
    print(f"wrote {done['arch']}{head} ({done['source_format']} -> {cfg.format}): {done['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
