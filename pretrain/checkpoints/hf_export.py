"""Hugging Face transformers export of ViT backbones: a `ViTModel` folder (config.json + model.safetensors).

The suite's ViT and transformers' ViT compute the same function: pre-norm blocks, exact GELU, one
LayerNorm eps everywhere, [CLS] first, the position embedding added after the [CLS] token is
prepended. Only the names differ, and HF splits the fused qkv projection into query/key/value. The
weights are written in the `ViTModel` layout of the Hub's ViT checkpoints (`embeddings.*`,
`encoder.layer.N.*`, `layernorm.*`): the native layout of transformers 4.x, which 5.x renames on load.

Load it with

    from transformers import ViTModel
    model = ViTModel.from_pretrained(FOLDER, add_pooling_layer=False)
    tokens = model(pixel_values=x).last_hidden_state  # (B, 1+N, D), = backbone.forward_features(x)

(iBOT has no pooler: `add_pooling_layer=False`, or transformers adds a randomly initialised one.)
The learned mask token of a student is not exported. At other resolutions transformers resizes the
position embedding its own way (`interpolate_pos_encoding=True`), not with the authors' rule.

The suite reads such a folder back (`load_backbone(FOLDER)`, `pretrained=FOLDER`): `read_hf` rebuilds the
backbone's weights exactly from model.safetensors and the constructor kwargs config.json records
(`ibot_suite`); a ViTModel folder written elsewhere (no `ibot_suite` entry) is refused with one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from plumbing import CheckpointError, ConfigError, atomic_write, atomic_write_text

from ..config import FORMAT_BACKBONE
from ..data.folder import IMAGENET_MEAN, IMAGENET_STD
from ..models.vit import VisionTransformer
from . import safetensors_io

# suite name -> HF name inside block N (prefix `encoder.layer.N.`)
_BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def hf_vit_config(backbone: VisionTransformer, meta: dict | None = None) -> dict:
    """transformers `ViTConfig` fields (as a plain dict) describing `backbone`."""
    eps = {m.eps for m in backbone.modules() if isinstance(m, nn.LayerNorm)}
    if len(eps) != 1:
        raise ValueError(f"transformers' ViT has one LayerNorm eps; this backbone has {sorted(eps)}")
    kw = backbone.arch_kwargs()
    config = {
        "architectures": ["ViTModel"],
        "model_type": "vit",
        "hidden_size": kw["embed_dim"],
        "num_hidden_layers": kw["depth"],
        "num_attention_heads": kw["num_heads"],
        "intermediate_size": backbone.blocks[0].mlp.fc1.out_features,
        "hidden_act": "gelu",  # exact (erf) GELU, as nn.GELU()
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": eps.pop(),
        "image_size": kw["img_size"],
        "patch_size": kw["patch_size"],
        "num_channels": 3,
        "qkv_bias": kw["qkv_bias"],
        "encoder_stride": kw["patch_size"],
        "torch_dtype": "float32",
        "ibot_suite": {"backbone_kwargs": kw, **({"meta": meta} if meta else {})},  # provenance, ignored by HF
    }
    return config


def hf_vit_state(backbone: VisionTransformer) -> dict[str, Tensor]:
    """The backbone's weights under `ViTModel`'s names; qkv (3D, D) split into query/key/value (D, D)."""
    sd = {k: v.detach().cpu() for k, v in backbone.state_dict().items() if k != "masked_embed"}
    out = {
        "embeddings.cls_token": sd.pop("cls_token"),  # (1, 1, D)
        "embeddings.position_embeddings": sd.pop("pos_embed"),  # (1, 1+N, D)
        "embeddings.patch_embeddings.projection.weight": sd.pop("patch_embed.proj.weight"),  # (D, 3, p, p)
        "embeddings.patch_embeddings.projection.bias": sd.pop("patch_embed.proj.bias"),
        "layernorm.weight": sd.pop("norm.weight"),
        "layernorm.bias": sd.pop("norm.bias"),
    }
    for i in range(backbone.depth):
        src, dst = f"blocks.{i}.", f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = sd.pop(f"{src}attn.qkv.{kind}", None)  # rows: q, then k, then v (see vit.Attention._qkv)
            if qkv is not None:
                for name, part in zip(("query", "key", "value"), qkv.chunk(3, dim=0), strict=True):
                    out[f"{dst}attention.attention.{name}.{kind}"] = part
            for ours, theirs in _BLOCK_NAMES.items():
                out[f"{dst}{theirs}.{kind}"] = sd.pop(f"{src}{ours}.{kind}")
    if sd:
        raise ValueError(f"weights with no transformers ViT counterpart: {sorted(sd)}")
    return out


def hf_preprocessor_config(backbone: VisionTransformer) -> dict:
    """`ViTImageProcessor` settings: bicubic resize to the training size, ImageNet mean/std."""
    size = backbone.arch_kwargs()["img_size"]
    return {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": size, "width": size},
        "resample": 3,  # PIL bicubic
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
    }


def export_hf(backbone: nn.Module, folder: str | os.PathLike, meta: dict | None = None) -> Path:
    """Write a transformers `ViTModel` folder for a ViT backbone (config.json, model.safetensors,
    preprocessor_config.json); returns the folder. Needs the safetensors package, not transformers."""
    if not isinstance(backbone, VisionTransformer):
        raise ConfigError(
            f"the Hugging Face export covers ViT backbones only, not {type(backbone).__name__}; "
            "use format=suite, safetensors or timm"
        )
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file: the Hugging Face export writes a folder")
    folder.mkdir(parents=True, exist_ok=True)
    data = safetensors_io.state_bytes(hf_vit_state(backbone), metadata={"format": "pt"})
    atomic_write(folder / "model.safetensors", lambda f: f.write(data))
    atomic_write_text(folder / "config.json", json.dumps(hf_vit_config(backbone, meta), indent=2) + "\n")
    atomic_write_text(folder / "preprocessor_config.json", json.dumps(hf_preprocessor_config(backbone), indent=2))
    return folder


def is_hf_folder(path: str | os.PathLike) -> bool:
    """A folder holding config.json (a Hugging Face model folder, the suite's own export or another)."""
    return Path(path).is_dir() and (Path(path) / "config.json").is_file()


def read_hf(folder: str | os.PathLike) -> tuple[dict, dict[str, Tensor], dict]:
    """(backbone kwargs, the suite's ViT state dict, meta) of a folder `export_hf` wrote; CheckpointError
    for another folder, MissingExtraError without the safetensors package."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}: config.json is not readable JSON ({e})") from None
    suite = config.get("ibot_suite") if isinstance(config, dict) else None
    if not isinstance(suite, dict) or "backbone_kwargs" not in suite:
        raise CheckpointError(
            f"{folder} is a Hugging Face model folder that this suite did not export (no 'ibot_suite' entry in "
            "config.json): load it with transformers (ViTModel.from_pretrained), or give a checkpoint file"
        )
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(f"{folder}: model.safetensors not found (an incomplete Hugging Face export)")
    kwargs = {**suite["backbone_kwargs"], "use_mask_token": False}  # the mask token is not exported
    try:
        tensors = safetensors_io.read(weights, FORMAT_BACKBONE, "cpu")  # metadata format "pt": plain tensors
    except ImportError:
        raise
    except Exception as e:  # the Rust reader raises its own error types on damaged files
        raise CheckpointError(f"{weights}: not a readable safetensors file (truncated or corrupt?): {e}") from None
    return kwargs, suite_vit_state(tensors, int(kwargs["depth"]), weights), dict(suite.get("meta") or {})


def suite_vit_state(hf: dict[str, Tensor], depth: int, path: Path) -> dict[str, Tensor]:
    """`hf_vit_state`'s inverse: ViTModel names -> the suite's, query/key/value joined into qkv."""
    hf = dict(hf)
    try:
        out = {
            "cls_token": hf.pop("embeddings.cls_token"),
            "pos_embed": hf.pop("embeddings.position_embeddings"),
            "patch_embed.proj.weight": hf.pop("embeddings.patch_embeddings.projection.weight"),
            "patch_embed.proj.bias": hf.pop("embeddings.patch_embeddings.projection.bias"),
            "norm.weight": hf.pop("layernorm.weight"),
            "norm.bias": hf.pop("layernorm.bias"),
        }
        for i in range(depth):
            src, dst = f"encoder.layer.{i}.", f"blocks.{i}."
            for kind in ("weight", "bias"):
                parts = [hf.pop(f"{src}attention.attention.{n}.{kind}", None) for n in ("query", "key", "value")]
                if all(p is not None for p in parts):
                    out[f"{dst}attn.qkv.{kind}"] = torch.cat(parts, dim=0)
                for ours, theirs in _BLOCK_NAMES.items():
                    out[f"{dst}{ours}.{kind}"] = hf.pop(f"{src}{theirs}.{kind}")
    except KeyError as e:
        raise CheckpointError(f"{path}: weight {e.args[0]} missing (not a ViT written by this suite)") from None
    if hf:
        raise CheckpointError(f"{path}: weights with no place in the suite's ViT: {sorted(hf)[:8]}")
    return out
