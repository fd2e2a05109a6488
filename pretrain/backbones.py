"""Explicit backbone registry: `build_backbone(arch, **kwargs)`."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .vit import VIT_SIZES, vit

ARCHS: dict[str, Callable[..., nn.Module]] = {name: partial(vit, name) for name in VIT_SIZES}


def build_backbone(arch: str, **kwargs) -> nn.Module:
    """Build a registered backbone; kwargs include `patch_size`, `img_size`, `drop_path_rate`."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid: {', '.join(sorted(ARCHS))}")
    return ARCHS[arch](**kwargs)
