"""Where each head of the grid reads its features, so that one backbone forward per batch feeds them all.

`cls` features are a prefix of `cls+avgpool` features (evalkit.features), so those heads read
prefixes of the wider one. `avgpool_prenorm` (the mean of the last block's patch tokens BEFORE the
final norm, the authors' `avgpool_patchtokens=1`) is not a prefix of either: a grid that mixes it with
the [CLS] recipes gets features [widest [CLS] recipe | avgpool_prenorm] from one forward, and its
avgpool_prenorm heads read the last D columns.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from evalkit import HeadGrid, HeadSpec, feature_fn, pool_tokens, recipe_dim, widest_recipe

PRENORM = "avgpool_prenorm"


class OffsetHeadGrid(HeadGrid):
    """A HeadGrid whose head i reads `features[:, offsets[i] : offsets[i] + dims[i]]` (HeadGrid reads prefixes)."""

    def __init__(self, grid: list[HeadSpec], widths, n_last_blocks: int, num_classes: int, offsets: list[int]):
        super().__init__(grid, widths, n_last_blocks, num_classes)
        self.offsets = offsets

    def forward(self, features: Tensor) -> list[Tensor]:
        return [head(features[:, o : o + d]) for head, o, d in zip(self.heads, self.offsets, self.dims, strict=True)]


def grid_layout(
    backbone: nn.Module, grid: list[HeadSpec], n: int, widths: int | list[int]
) -> tuple[Callable[[Tensor], Tensor], list[int], str]:
    """(images (B, 3, H, W) -> features (B, F), each head's column offset, a name of the layout)."""
    cls_grid = [h for h in grid if h.recipe != PRENORM]
    if not cls_grid:
        return feature_fn(backbone, PRENORM, n), [0] * len(grid), PRENORM
    widest = widest_recipe(cls_grid)
    if len(cls_grid) == len(grid):
        return feature_fn(backbone, widest, n), [0] * len(grid), widest
    feature_fn(backbone, PRENORM, n)  # raises for a backbone without pre-norm block outputs (Swin)
    split = recipe_dim(widest, widths, n)
    depth = backbone.depth

    def fn(images: Tensor) -> Tensor:
        raw = backbone.get_block_outputs(images, list(range(depth - n, depth)), norm=False)  # n x (B, 1+N, D)
        normed = [backbone.norm(x) for x in raw]  # = get_intermediate_layers(images, n)
        return torch.cat([pool_tokens(normed, widest), pool_tokens(raw[-1:], PRENORM)], dim=-1)  # (B, split + D)

    offsets = [split if h.recipe == PRENORM else 0 for h in grid]
    return fn, offsets, f"{widest}|{PRENORM}"
