"""timm interop: the suite's ViT and Swin weights in timm's `VisionTransformer` / `SwinTransformer`.

`to_timm(backbone)` gives the timm model in memory; `export_timm(backbone, path)` writes a timm file:
a plain state dict under timm's names plus a JSON spec beside it (`<path stem>.json`) holding the
timm model name, its constructor kwargs and the `pretrained_cfg_overlay` that makes
`timm.create_model(..., pretrained=True)` read that file. Loading it (see `export_timm`):

    spec = json.load(open("backbone_timm.json"))
    model = timm.create_model(spec["model_name"], pretrained=True,
                              pretrained_cfg_overlay=spec["pretrained_cfg_overlay"], **spec["model_kwargs"])

The overlay sets `num_classes=0` like the model kwargs, so timm loads the file strictly: a file that
does not fit raises instead of leaving random weights (timm only warns when the classifier of its
default config is dropped, which is what happens to a plain `file=backbone.pth` overlay).
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plumbing import atomic_write, atomic_write_text

from ..data.folder import IMAGENET_MEAN, IMAGENET_STD
from ..models.swin import SwinBackbone, swin_size_name
from ..models.vit import VIT_SIZES


def _timm_kwargs(backbone: nn.Module) -> dict[str, Any]:
    """timm constructor kwargs (plain types) that rebuild `backbone` without mask token or classifier."""
    kw = backbone.arch_kwargs()
    common = {k: kw[k] for k in ("img_size", "patch_size", "embed_dim", "num_heads", "mlp_ratio", "qkv_bias")}
    if isinstance(backbone, SwinBackbone):
        # any input that is a multiple of 32 px, as the suite's Swin (strict_img_size=False)
        return {**common, "depths": list(kw["depths"]), "window_size": kw["window_size"], "num_classes": 0,
                "global_pool": "avg", "strict_img_size": False}  # fmt: skip
    return {**common, "depth": kw["depth"], "num_classes": 0, "global_pool": "token"}


def to_timm(backbone: nn.Module) -> nn.Module:
    """A timm model (no classifier, eval mode) holding `backbone`'s weights: same tokens at the training size.

    ViT: timm's `VisionTransformer` with [CLS] pooling; its `forward_features(x)` equals the suite's.
    Swin: timm's `SwinTransformer` (LayerNorm eps 1e-6 as the suite's); its `forward_features(x)` is the
    (B, h, w, D) map whose flattened tokens are the suite's `forward_features(x)[:, 1:]` (the suite's
    pseudo-[CLS] at index 0 is their average). Only the mask token, a pre-training parameter timm does
    not have, is left out.
    """
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    kwargs = _timm_kwargs(backbone)
    if isinstance(backbone, SwinBackbone):
        eps = backbone.arch_kwargs()["norm_eps"]
        model = SwinTransformer(**kwargs, norm_layer=partial(nn.LayerNorm, eps=eps))
    else:
        model = VisionTransformer(**kwargs)
    state = {k: v for k, v in backbone.state_dict().items() if k != "masked_embed"}
    model.load_state_dict(state, strict=True)
    return model.eval()


def timm_model_name(backbone: nn.Module) -> str:
    """A registered timm name of the same family; the spec's kwargs fix the exact architecture."""
    kw = backbone.arch_kwargs()
    if isinstance(backbone, SwinBackbone):
        return f"{swin_size_name(backbone)}_patch4_window7_224"
    size = next((n for n, (d, _, _) in VIT_SIZES.items() if d == kw["embed_dim"]), "vit_small")
    return f"{size}_patch16_224"


def timm_spec(backbone: nn.Module, file: str | os.PathLike, pretrained_cfg: dict | None = None) -> dict[str, Any]:
    """{model_name, model_kwargs, pretrained_cfg_overlay, note} for `timm.create_model` to load `file`."""
    kw = backbone.arch_kwargs()
    overlay = {
        "file": str(Path(file).resolve()),
        "num_classes": 0,  # equal to the model's: timm then loads strictly
        "input_size": [3, kw["img_size"], kw["img_size"]],
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "interpolation": "bicubic",
        "crop_pct": 0.875,  # resize 256 -> centre crop 224, the evaluation recipe
        "first_conv": "patch_embed.proj",
        "classifier": "head.fc" if isinstance(backbone, SwinBackbone) else "head",
        **(pretrained_cfg or {}),
    }
    spec = {"model_name": timm_model_name(backbone), "model_kwargs": _timm_kwargs(backbone),
            "pretrained_cfg_overlay": overlay}  # fmt: skip
    if isinstance(backbone, SwinBackbone):
        spec["note"] = (
            f"also pass norm_layer=functools.partial(torch.nn.LayerNorm, eps={kw['norm_eps']}) "
            "(timm's Swin default eps is 1e-5; JSON cannot hold a layer class)"
        )
    return spec


def export_timm(
    backbone: nn.Module, path: str | os.PathLike, pretrained_cfg: dict | None = None, meta: dict | None = None
) -> dict[str, Any]:
    """Write `backbone` as a timm state dict at `path` (safetensors when it ends in .safetensors, else a
    torch file) and its spec (see `timm_spec`) at `path` with suffix .json; returns the spec.

    Load it (ViT; tested with timm 1.0):

        spec = json.load(open(SPEC))
        model = timm.create_model(spec["model_name"], pretrained=True,
                                  pretrained_cfg_overlay=spec["pretrained_cfg_overlay"], **spec["model_kwargs"])

    For Swin add `norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6)` (the spec's `note`).
    `pretrained_cfg` entries override the overlay's (e.g. `crop_pct`, `mean`, `std`); `meta` is kept in
    the spec for provenance.
    """
    path = Path(path)
    if path.suffix == ".json":
        raise ValueError(f"{path}: the timm weights need another suffix (.pth or .safetensors); the spec is .json")
    state = {k: v.detach().cpu().clone() for k, v in to_timm(backbone).state_dict().items()}
    if path.suffix == ".safetensors":
        from . import safetensors_io

        data = safetensors_io.state_bytes(state, metadata={"format": "pt"})
        atomic_write(path, lambda f: f.write(data))
    else:
        atomic_write(path, lambda f: torch.save(state, f))
    spec = timm_spec(backbone, path, pretrained_cfg)
    if meta:
        spec["meta"] = dict(meta)
    atomic_write_text(path.with_suffix(".json"), json.dumps(spec, indent=2) + "\n")
    return spec
