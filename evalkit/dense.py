"""Pieces that fine-tuning, detection and segmentation share (reference §3.5-§3.7).

- `feature_maps`: patch tokens of chosen blocks as (B, D, H/p, W/p) maps, with or without the norm.
- `MultiScaleAdaptor`: the simple deconv / identity / max-pool pyramid to strides 4, 8, 16, 32.
- `authors_dense_name` / `adaptor_state_from_authors`: the map between our dense models' parameter names
  and the iBOT authors' mmdet/mmseg backbone names (`backbone.vit.X` <-> `backbone.X`, the adaptor's
  `levels.i` <-> their `fpn1..fpn4`), for comparing layer-decay groups and loading their adaptor weights.
- `vit_layer_id` and `layer_decay_param_groups`: layer-wise lr decay with the BEiT layer ids
  (embeddings 0, block i -> i + 1, everything else L + 1; scale = decay^(L + 1 - id));
  `backbone_layer_id` picks the rule of a backbone (Swin: its own `layer_id`, blocks of all stages).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from torch import Tensor, nn


def default_out_indices(depth: int) -> list[int]:
    """Blocks (3, 5, 7, 11) of a 12-block ViT, scaled to the depth (ViT-L: 7, 11, 15, 23)."""
    return [round((i + 1) * depth / 12) - 1 for i in (3, 5, 7, 11)]


def feature_maps(backbone: nn.Module, x: Tensor, indices: Sequence[int], norm: bool) -> list[Tensor]:
    """(B, D, H/p, W/p) maps of the patch tokens after the blocks at `indices`."""
    B, _, H, W = x.shape
    p = backbone.patch_size
    outs = backbone.get_block_outputs(x, indices, norm=norm)  # each (B, 1+N, D)
    return [t[:, 1:].transpose(1, 2).reshape(B, -1, H // p, W // p) for t in outs]


class MultiScaleAdaptor(nn.Module):
    """Four stride-p maps -> strides 4, 8, 16, 32 (patch 16: deconv-BN-GELU-deconv / deconv / id / pool;
    patch 8: deconv / id / pool 2 / pool 4)."""

    def __init__(self, embed_dim: int, patch_size: int = 16, norm: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        D = embed_dim

        def up():
            return nn.ConvTranspose2d(D, D, kernel_size=2, stride=2)

        if patch_size == 16:
            self.levels = nn.ModuleList(
                [nn.Sequential(up(), norm(D), nn.GELU(), up()), up(), nn.Identity(), nn.MaxPool2d(2, 2)]
            )
        elif patch_size == 8:
            self.levels = nn.ModuleList([up(), nn.Identity(), nn.MaxPool2d(2, 2), nn.MaxPool2d(4, 4)])
        else:
            raise ValueError(f"the multi-scale adaptor supports patch 8 and 16, not {patch_size}")

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        if len(maps) != 4:
            raise ValueError(f"expected 4 feature maps, got {len(maps)}")
        return [level(m) for level, m in zip(self.levels, maps, strict=True)]


# Our adaptor's module prefixes -> the authors' (`register_backbone.py`: fpn1 = Sequential(deconv, SyncBN, GELU,
# deconv), fpn2 = Sequential(deconv) at patch 16; fpn1 = Sequential(deconv) at patch 8; the rest hold no weights).
AUTHORS_ADAPTOR_NAMES = {
    16: {"levels.0.0.": "fpn1.0.", "levels.0.1.": "fpn1.1.", "levels.0.3.": "fpn1.3.", "levels.1.": "fpn2.0."},
    8: {"levels.0.": "fpn1.0."},
}


def authors_dense_name(name: str, patch_size: int = 16, body: str = "vit") -> str:
    """The authors' name of a parameter of our detector or segmentor (the name map of the README's parity rows).

    Their backbone is the ViT with the adaptor inside it, under `backbone.`; ours wraps the core ViT as
    `backbone.<body>.` beside `backbone.adaptor.`:

    - `backbone.vit.X` -> `backbone.X` (cls_token, pos_embed, patch_embed.proj.*, blocks.i.*, norm.*;
      our `masked_embed` keeps its name);
    - `backbone.adaptor.levels.0.0.*` -> `backbone.fpn1.0.*`, `levels.0.1` -> `fpn1.1` (the BatchNorm),
      `levels.0.3` -> `fpn1.3`, `levels.1.*` -> `fpn2.0.*` (patch 16); `levels.0.*` -> `fpn1.0.*` (patch 8);
    - anything else (neck, heads) unchanged: both sides get layer id depth + 1 there.
    """
    body_prefix, adaptor_prefix = f"backbone.{body}.", "backbone.adaptor."
    if name.startswith(body_prefix):
        return "backbone." + name[len(body_prefix) :]
    if name.startswith(adaptor_prefix):
        rest = name[len(adaptor_prefix) :]
        for ours, theirs in AUTHORS_ADAPTOR_NAMES[patch_size].items():
            if rest.startswith(ours):
                return "backbone." + theirs + rest[len(ours) :]
    return name


def adaptor_state_from_authors(state: dict[str, Tensor], patch_size: int = 16) -> dict[str, Tensor]:
    """The authors' adaptor weights (`fpn1.0.weight`, ..., no `backbone.` prefix) as our
    `MultiScaleAdaptor`'s state dict (`levels.0.0.weight`, ...); an unknown name raises KeyError."""
    back = {theirs: ours for ours, theirs in AUTHORS_ADAPTOR_NAMES[patch_size].items()}
    out = {}
    for name, value in state.items():
        theirs = next((t for t in back if name.startswith(t)), None)
        if theirs is None:
            raise KeyError(f"{name!r} is not an adaptor weight of the authors' patch-{patch_size} backbone")
        out[back[theirs] + name[len(theirs) :]] = value
    return out


# Never decayed: biases, and Swin's relative position bias tables (as Swin's own fine-tuning and mmdet configs).
NO_DECAY_SUFFIXES = (".bias", "relative_position_bias_table")
EMBEDDINGS = ("cls_token", "mask_token", "masked_embed", "pos_embed", "patch_embed")


def vit_layer_id(name: str, depth: int, prefix: str = "") -> int:
    """BEiT layer id of a parameter name: embeddings 0, `blocks.i` i + 1, anything else depth + 1."""
    if prefix:
        if not name.startswith(prefix):
            return depth + 1
        name = name[len(prefix) :]
    if name.split(".")[0] in EMBEDDINGS:
        return 0
    m = re.match(r"blocks\.(\d+)\.", name)
    return int(m.group(1)) + 1 if m else depth + 1


def backbone_layer_id(backbone: nn.Module) -> Callable[[str], int]:
    """The layer-id rule of `backbone` for `layer_decay_param_groups(layer_id=...)`.

    A function of a parameter name inside the backbone (no prefix): Swin's own `layer_id` (embeddings 0,
    block k over all stages k + 1, patch merging with the block before it, the rest depth + 1), else
    the ViT rule `vit_layer_id` with the backbone's depth.
    """
    rule = getattr(backbone, "layer_id", None)
    return rule if callable(rule) else partial(vit_layer_id, depth=backbone.depth)


def layer_decay_param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    depth: int,
    layer_decay: float,
    weight_decay: float,
    backbone_prefix: str = "",
    no_decay_names: Sequence[str] = (),
    layer_id: Callable[[str], int] | None = None,
) -> list[dict]:
    """AdamW groups with `lr_scale` = layer_decay^(depth + 1 - id) and `weight_decay` per group.

    `layer_id(name)` gives the id of a backbone parameter from its name with `backbone_prefix`
    stripped (default: the ViT rule; `backbone_layer_id(backbone)` gives the backbone's own rule);
    names outside the prefix get depth + 1. Biases, 1-D tensors and Swin's relative position bias tables
    are never decayed; `no_decay_names` (exact names, e.g. the backbone's `pos_embed`) are exempt too.
    Callers multiply their scheduled lr by each group's `lr_scale`.
    """
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named_params:
        if not p.requires_grad:
            continue
        if layer_id is None:
            lid = vit_layer_id(name, depth, backbone_prefix)
        elif name.startswith(backbone_prefix):
            lid = layer_id(name[len(backbone_prefix) :])
        else:
            lid = depth + 1
        decay = not (p.ndim == 1 or name.endswith(NO_DECAY_SUFFIXES) or name in no_decay_names)
        g = groups.setdefault(
            (lid, decay),
            {
                "params": [],
                "names": [],
                "layer_id": lid,
                "lr_scale": layer_decay ** (depth + 1 - lid),
                "weight_decay": weight_decay if decay else 0.0,
            },
        )
        g["params"].append(p)
        g["names"].append(name)
    return [groups[k] for k in sorted(groups)]
