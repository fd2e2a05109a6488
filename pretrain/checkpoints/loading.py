"""Reading and writing checkpoints: safe, strict, self-describing (reference §2).

Every torch file is read with `torch.load(weights_only=True)` and an allow-list holding only
`argparse.Namespace` (the authors' checkpoints pickle their arguments); safetensors files (the
suite's own or plain state dicts) are read as well. The format is recognised from
the contents; architectures are inferred from tensor shapes where the file does not describe them.
Loading is strict: a missing, unexpected or mis-shaped key raises one `CheckpointError` naming them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from plumbing import CheckpointError, CheckpointNotFoundError

from ..config import FORMAT_BACKBONE
from ..models.backbones import build_backbone, is_swin
from ..models.head import IBOTHead
from ..models.vit import VIT_SIZES
from . import safetensors_io
from .hf_export import is_hf_folder, read_hf

FORMAT_TRAINING = "ibot-suite/training-checkpoint"
SAFE_GLOBALS = [argparse.Namespace]


# ----------------------------------------------------------------------------------------- I/O
def safe_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """`torch.load` with weights_only=True; refuses pickled code with a clear error."""
    path = Path(path)
    if path.is_dir():
        what = "a Hugging Face model folder: load_backbone reads the suite's own" if is_hf_folder(path) else "a folder"
        raise CheckpointError(f"{path} is {what} (no head, no training state); give a checkpoint file here")
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint not found: {path} (check the path; nothing was loaded)")
    if safetensors_io.is_safetensors(path):
        return _load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS), warnings.catch_warnings():
            # a pickle of another protocol (a raw pickle, never a torch.save file) draws a torch warning
            # before the refusal below: the refusal is the only word
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: the file holds pickled objects outside the allow-list "
            f"(only tensors, plain Python types and argparse.Namespace are read). It may be unsafe. "
            f"Detail: {_reason(e)}"
        ) from None
    except Exception as e:  # zip, pickle and storage readers raise many types on damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None


def _load_safetensors(path: Path, map_location: Any) -> dict[str, Any]:
    """The suite's backbone payload or a plain state dict from a safetensors file."""
    try:
        return safetensors_io.read(path, FORMAT_BACKBONE, map_location)
    except ImportError as e:
        raise CheckpointError(f"{path}: cannot read a safetensors file: {e}") from None
    except Exception as e:  # the Rust reader raises its own error types on damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or corrupt?): {e}") from None


def _reason(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
    return lines[0] if lines else str(e).splitlines()[0]


def weights_fingerprint(module: nn.Module) -> str:
    """sha256 over the names, shapes, dtypes and bytes of `module`'s state dict: equal weights, equal print."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------- picking the weights
def _pick(ckpt: Any, key: str, path: Path) -> tuple[dict[str, Tensor], str, dict]:
    """Find the state dict for `key` in a checkpoint; returns (state dict, format name, extras)."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(ckpt).__name__}")
    fmt = ckpt.get("format")
    if fmt == FORMAT_BACKBONE:
        return ckpt, "ibot-suite-backbone", {"epoch": ckpt.get("meta", {}).get("epoch")}
    if fmt == FORMAT_TRAINING:
        return _by_key(ckpt, key, path), "ibot-suite-training", {"epoch": ckpt.get("epoch")}
    if "student" in ckpt or "teacher" in ckpt:
        args = ckpt.get("args")
        extras = {
            "epoch": ckpt.get("epoch"),
            "args": vars(args) if isinstance(args, argparse.Namespace) else None,
        }
        return _by_key(ckpt, key, path), "ibot-official-full", extras
    for wrapper in ("state_dict", "model"):
        if isinstance(ckpt.get(wrapper), dict):
            return ckpt[wrapper], f"{wrapper}-dict", {}
    if ckpt and all(isinstance(v, Tensor) for v in ckpt.values()):
        return ckpt, "plain-state-dict", {}
    raise CheckpointError(f"{path}: no weights found; top-level keys: {sorted(map(str, ckpt))[:20]}")


def _by_key(ckpt: dict, key: str, path: Path) -> dict[str, Tensor]:
    if key not in ckpt:
        have = [k for k in ("teacher", "student") if k in ckpt]
        raise CheckpointError(f"{path}: no {key!r} weights in this checkpoint; available: {have}")
    return ckpt[key]


def split_prefixes(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(backbone, head) state dicts: strips DDP's `module.` and the `backbone.`/`head.` prefixes.

    A state dict without a `backbone.` prefix is a bare backbone (timm/DINO naming); a timm
    classifier (`head.weight`, `head.bias`) is then not backbone and is set aside.
    """
    sd = {re.sub(r"^module\.", "", k): v for k, v in sd.items()}
    if any(k.startswith("backbone.") for k in sd):
        backbone = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
        head = {k[len("head.") :]: v for k, v in sd.items() if k.startswith("head.")}
        return backbone, head
    head = {k: v for k, v in sd.items() if k in ("head.weight", "head.bias")}
    return {k: v for k, v in sd.items() if k not in head}, {}


# --------------------------------------------------------------------- inferring architectures
def infer_vit_kwargs(sd: dict[str, Tensor], path: Path) -> dict[str, Any]:
    """ViT constructor kwargs from tensor shapes (heads from the standard width -> heads table)."""
    needed = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: not a ViT backbone (missing {missing}); keys start with {sorted(sd)[:8]}")
    proj = sd["patch_embed.proj.weight"]  # (D, 3, p, p)
    dim, patch = proj.shape[0], proj.shape[-1]
    depth = 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k)))
    grid = round((sd["pos_embed"].shape[1] - 1) ** 0.5)
    heads = {d: h for d, _, h in VIT_SIZES.values()}.get(dim, max(dim // 64, 1))
    return {
        "img_size": grid * patch,
        "patch_size": patch,
        "embed_dim": dim,
        "depth": depth,
        "num_heads": heads,
        "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        "qkv_bias": "blocks.0.attn.qkv.bias" in sd,
        "use_mask_token": "masked_embed" in sd,
    }


SWIN_MARKER = "layers.0.blocks.0.attn.relative_position_bias_table"
SWIN_DERIVED = ("relative_position_index", "attn_mask")  # buffers rebuilt from the window size


def swin_weights(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """A Swin state dict in timm's layout: derived buffers and the unused classifier dropped.

    The original Swin code (and the authors' iBOT Swin) merges patches at the *end* of stage i; timm
    at the start of stage i + 1, so `layers.i.downsample` becomes `layers.{i+1}.downsample`.
    """
    old_layout = "layers.0.downsample.reduction.weight" in sd
    out = {}
    for k, v in sd.items():
        if k.split(".")[-1] in SWIN_DERIVED or re.match(r"head\.(fc\.)?(weight|bias)$", k):
            continue
        if old_layout:
            k = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) + 1}.downsample", k)
        out[k] = v
    return out


def infer_swin_kwargs(sd: dict[str, Tensor], path: Path) -> dict[str, Any]:
    """Swin constructor kwargs from tensor shapes (timm layout, see `swin_weights`).

    Heads come from the relative-position tables, the window from stage 0's table; `img_size` is
    224 unless the last stage's window is clamped below it (window 14: 7 x 32 px = 224 again).
    """
    needed = ("patch_embed.proj.weight", SWIN_MARKER, "layers.0.blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(f"{path}: not a Swin backbone (missing {missing}); keys start with {sorted(sd)[:8]}")
    proj = sd["patch_embed.proj.weight"]  # (C, 3, p, p)
    dim, patch = proj.shape[0], proj.shape[-1]
    blocks = {(int(m.group(1)), int(m.group(2))) for k in sd if (m := re.match(r"layers\.(\d+)\.blocks\.(\d+)\.", k))}
    stages = 1 + max(s for s, _ in blocks)
    depths = [1 + max(b for s, b in blocks if s == i) for i in range(stages)]
    tables = [sd[f"layers.{i}.blocks.0.attn.relative_position_bias_table"] for i in range(stages)]  # ((2w-1)^2, h)
    windows = [(round(t.shape[0] ** 0.5) + 1) // 2 for t in tables]
    last = patch * 2 ** (stages - 1)
    return {
        "img_size": windows[-1] * last if windows[-1] < windows[0] else 224,
        "patch_size": patch,
        "embed_dim": dim,
        "depths": depths,
        "num_heads": [t.shape[1] for t in tables],
        "window_size": windows[0],
        "mlp_ratio": sd["layers.0.blocks.0.mlp.fc1.weight"].shape[0] / dim,
        "qkv_bias": "layers.0.blocks.0.attn.qkv.bias" in sd,
        "use_mask_token": "masked_embed" in sd,
    }


def infer_head_kwargs(sd: dict[str, Tensor], path: Path) -> dict[str, Any]:
    if "last_layer.weight_v" not in sd:
        raise CheckpointError(f"{path}: no iBOT/DINO head here (no 'last_layer.weight_v'); keys: {sorted(sd)[:8]}")
    if "mlp.weight" in sd:
        linears = ["mlp.weight"]
    else:
        linears = sorted((k for k in sd if re.fullmatch(r"mlp\.\d+\.weight", k)), key=lambda k: int(k.split(".")[1]))
    first, last = sd[linears[0]], sd[linears[-1]]
    out_dim = sd["last_layer.weight_v"].shape[0]
    shared = "last_layer2.weight_v" not in sd or _same_layer(sd)
    return {
        "in_dim": first.shape[1],
        "out_dim": out_dim,
        "patch_out_dim": out_dim if shared else sd["last_layer2.weight_v"].shape[0],
        "shared_head": shared,
        "norm_last_layer": True,
        "nlayers": len(linears),
        "hidden_dim": first.shape[0] if len(linears) > 1 else 2048,
        "bottleneck_dim": last.shape[0],
    }


def _same_layer(sd: dict[str, Tensor]) -> bool:
    """A shared head saves its prototype layer twice (`last_layer2` aliases `last_layer`)."""
    return all(
        f"last_layer2.{n}" in sd
        and sd[f"last_layer.{n}"].shape == sd[f"last_layer2.{n}"].shape
        and torch.equal(sd[f"last_layer.{n}"], sd[f"last_layer2.{n}"])
        for n in ("weight_g", "weight_v")
    )


def load_strict(module: nn.Module, sd: dict[str, Tensor], path: Path, what: str) -> None:
    """load_state_dict that reports every missing, unexpected and mis-shaped key in one error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(sd) & set(own))
        if sd[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        parts = [f"missing keys {missing}"] * bool(missing) + [f"unexpected keys {unexpected}"] * bool(unexpected)
        parts += [f"shape mismatches {shapes}"] * bool(shapes)
        raise CheckpointError(f"{path}: the {what} weights do not fit: " + "; ".join(parts))
    module.load_state_dict(sd, strict=True)


# ----------------------------------------------------------------------------- public loaders
def load_backbone(path: str | os.PathLike, key: str = "teacher", map_location: Any = "cpu"):
    """Backbone (eval mode) and info dict from any supported checkpoint (torch or safetensors), or from a
    Hugging Face ViTModel folder the suite exported (`hf_export.read_hf`); see docs/core-api.md."""
    path = Path(path)
    if is_hf_folder(path):
        kwargs, weights, meta = read_hf(path)
        arch, fmt, extras = _size_name(kwargs["embed_dim"]), "ibot-suite-hf", {"epoch": meta.get("epoch")}
    else:
        ckpt = safe_load(path, map_location)
        sd, fmt, extras = _pick(ckpt, key, path)
        if fmt == "ibot-suite-backbone":
            kwargs, arch, weights = dict(sd["backbone_kwargs"]), sd["arch"], sd["backbone"]
        else:
            arch, kwargs, weights = _backbone_spec(ckpt, sd, fmt, extras, key, path)
    backbone = build_backbone(arch, **kwargs)
    load_strict(backbone, weights, path, "backbone")
    backbone.eval()
    info = {
        "arch": arch,
        "patch_size": backbone.patch_size,
        "embed_dim": backbone.embed_dim,
        "depth": backbone.depth,
        "num_heads": backbone.num_heads,
        "format": fmt,
        "key": key if fmt in ("ibot-official-full", "ibot-suite-training") else None,
        "epoch": extras.get("epoch"),
        "path": str(path),
    }
    return backbone, info


def _backbone_spec(
    ckpt: dict, sd: dict, fmt: str, extras: dict, key: str, path: Path
) -> tuple[str, dict[str, Any], dict[str, Tensor]]:
    """(arch, kwargs, weights) of a file that is not an exported backbone: stored kwargs or inferred."""
    weights, _ = split_prefixes(sd)
    stored = (ckpt.get("backbone_kwargs") or {}).get(key) if fmt == "ibot-suite-training" else None
    arch = ckpt.get("arch")
    if SWIN_MARKER in weights or (arch and is_swin(arch)):
        weights = swin_weights(weights)
        kwargs = dict(stored or infer_swin_kwargs(weights, path))
        return arch if arch and is_swin(arch) else "swin_tiny", kwargs, weights  # kwargs fix the size
    kwargs = dict(stored or infer_vit_kwargs(weights, path))
    if (extras.get("args") or {}).get("num_heads"):  # the authors' args name the heads; shapes cannot
        kwargs["num_heads"] = int(extras["args"]["num_heads"])
    return arch or _size_name(kwargs["embed_dim"]), kwargs, weights


def load_head(path: str | os.PathLike, key: str = "teacher", map_location: Any = "cpu"):
    """iBOT projection head (eval mode) and info dict; `head(tokens) -> (cls_logits, patch_logits)`."""
    path = Path(path)
    ckpt = safe_load(path, map_location)
    sd, fmt, extras = _pick(ckpt, key, path)
    if fmt == "ibot-suite-backbone":
        if "head" not in sd:
            raise CheckpointError(f"{path}: this backbone file was exported without a head")
        kwargs, weights = dict(sd["head_kwargs"]), sd["head"]
    else:
        _, weights = split_prefixes(sd)
        if not weights:
            raise CheckpointError(f"{path}: no head weights in this checkpoint (a backbone-only file?)")
        stored = (ckpt.get("head_kwargs") or {}).get(key) if fmt == "ibot-suite-training" else None
        kwargs = dict(stored or infer_head_kwargs(weights, path))
    if kwargs["shared_head"] and "last_layer2.weight_v" in weights:
        if not _same_layer(weights):
            raise CheckpointError(f"{path}: head marked shared but last_layer2 differs from last_layer")
        weights = {k: v for k, v in weights.items() if not k.startswith("last_layer2.")}
    head = IBOTHead(**kwargs)
    load_strict(head, weights, path, "head")
    head.eval()
    return head, {**kwargs, "format": fmt, "epoch": extras.get("epoch"), "path": str(path)}


def _size_name(dim: int) -> str:
    """Registry name of the size family with this width; the kwargs fix depth and heads anyway."""
    return next((n for n, (d, _, _) in VIT_SIZES.items() if d == dim), "vit_small")
