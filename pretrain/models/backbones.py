"""Explicit backbone registry: `build_backbone(arch, **kwargs)`; ViT (`vit`) and Swin (`swin`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .swin import SWIN_SIZES, SwinBackbone, swin, swin_size_name
from .vit import VIT_SIZES, vit

ARCHS: dict[str, Callable[..., nn.Module]] = {name: partial(vit, name) for name in VIT_SIZES}
ARCHS.update({name: partial(swin, name) for name in SWIN_SIZES})


def build_backbone(arch: str, **kwargs) -> nn.Module:
    """Build a registered backbone; kwargs include `patch_size`, `img_size`, `drop_path_rate`.

    Swin names also take `window_size` (7 or 14); their default `drop_path_rate` is the size's
    (0.1 tiny, 0.2 small/base), the ViT's is 0.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](**kwargs)


def is_swin(arch: str) -> bool:
    """True for the registered Swin names."""
    return arch in SWIN_SIZES


def mask_grid(backbone: nn.Module) -> int:
    """Pixels per output token, the cell of the iBOT masks: ViT = patch_size, Swin = patch_size * 8 (32)."""
    return int(getattr(backbone, "mask_grid", backbone.patch_size))


def arch_name(backbone: nn.Module) -> str:
    """Registry name to rebuild `backbone` with its `arch_kwargs()`."""
    if isinstance(backbone, SwinBackbone):
        return swin_size_name(backbone)
    return next((n for n, (d, _, _) in VIT_SIZES.items() if d == backbone.embed_dim), "vit_small")


def with_drop_path(backbone: nn.Module, drop_path_rate: float) -> nn.Module:
    """A copy of `backbone` (ViT or Swin) rebuilt with stochastic depth 0 -> `drop_path_rate`, same weights.

    The stored constructor kwargs (`arch_kwargs()`) fix the size; the registry name only picks the
    family's factory.
    """
    rebuilt = build_backbone(arch_name(backbone), **{**backbone.arch_kwargs(), "drop_path_rate": drop_path_rate})
    rebuilt.load_state_dict(backbone.state_dict(), strict=True)
    return rebuilt
