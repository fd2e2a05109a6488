"""Swin Transformer backbones (timm's `SwinTransformer`) behind the same API as our ViT.

iBOT on Swin (paper arXiv 2111.07832; reference §1.2, §1.3, §5 item 24):
- the learned mask token replaces the (normalised) patch embedding on the 4-px grid; masks are drawn
  on the 32-px grid of the final-stage tokens and nearest-upsampled (repeat_interleave) to 4 px;
- `forward_features` returns (B, 1+N, D): a pseudo-[CLS] (the average of the final-stage tokens
  after the final LayerNorm) first, then the N final-stage tokens (N = 49 at 224 px);
- LayerNorm eps 1e-6 as the authors' Swin; student drop-path = the size's default (0.1 tiny,
  0.2 small/base), the teacher none.

Any input size that is a multiple of 32 px works (`strict_img_size=False`): when a stage's feature map
is not a multiple of the window (e.g. 96-px local crops: 24, 12, 6, 3 tokens a side with window 7),
timm zero-pads it to whole windows and builds the shifted-window mask for that size on the fly, as
the authors' Swin does (timm pads after the cyclic shift, the authors before it: for such sizes the
padding keys that the wrapped border tokens of shifted blocks can see differ slightly). The
window of a stage whose feature map at `img_size` is smaller than the window is clamped to that map
(window 14 at 224 px: stages of 56, 28, 14 tokens use 14, the 7x7 last stage uses 7), as in the
authors' code; `img_size` is therefore part of the architecture.

State-dict names are timm's (`patch_embed.*`, `layers.i.downsample.*`, `layers.i.blocks.j.*`,
`norm.*`) plus `masked_embed`; there is no classifier.
"""

from __future__ import annotations

from functools import partial

import torch
from timm.models.swin_transformer import SwinTransformer
from torch import Tensor, nn

# (stem width, blocks per stage, heads per stage, student drop-path) -- reference §1.3.
SWIN_SIZES: dict[str, tuple[int, tuple[int, ...], tuple[int, ...], float]] = {
    "swin_tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24), 0.1),
    "swin_small": (96, (2, 2, 18, 2), (3, 6, 12, 24), 0.2),
    "swin_base": (128, (2, 2, 18, 2), (4, 8, 16, 32), 0.2),
}
NO_CLS_ATTENTION = (
    "Swin has no [CLS] attention: its self-attention is local to windows and its [CLS] is the average "
    "of the final tokens. Use a ViT backbone for [CLS] attention maps."
)


class SwinBackbone(SwinTransformer):
    """timm's Swin with a mask token and the ViT backbone API of this project.

    Constructor arguments keep timm's meaning (`embed_dim` is the stem width, `depths` and `num_heads`
    are per stage); the attributes follow the ViT API: `embed_dim` is the final width (768 for
    swin_tiny), `depth` the total number of blocks, `num_heads` the heads of the last stage.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
        use_mask_token: bool = True,
    ):
        depths, num_heads = tuple(int(d) for d in depths), tuple(int(h) for h in num_heads)
        super().__init__(
            img_size=img_size, patch_size=patch_size, num_classes=0, embed_dim=embed_dim, depths=depths,
            num_heads=num_heads, window_size=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
            drop_path_rate=drop_path_rate, norm_layer=partial(nn.LayerNorm, eps=norm_eps), strict_img_size=False,
        )  # fmt: skip
        self._kwargs = {
            "img_size": int(img_size), "patch_size": int(patch_size), "embed_dim": int(embed_dim),
            "depths": list(depths), "num_heads": list(num_heads), "window_size": int(window_size),
            "mlp_ratio": float(mlp_ratio), "qkv_bias": bool(qkv_bias), "norm_eps": float(norm_eps),
            "use_mask_token": bool(use_mask_token),
        }  # fmt: skip
        self.img_size, self.patch_size, self.window_size = int(img_size), int(patch_size), int(window_size)
        self.stage_dims = [int(embed_dim * 2**i) for i in range(len(depths))]
        self.stage_strides = [self.patch_size * 2**i for i in range(len(depths))]
        self.block_dims = [dim for dim, d in zip(self.stage_dims, depths, strict=True) for _ in range(d)]
        self.embed_dim = self.stage_dims[-1]  # final width; timm's stem width stays in arch_kwargs()
        self.depth, self.depths, self.num_heads = sum(depths), depths, num_heads[-1]
        self.mask_grid = self.stage_strides[-1]  # one mask cell per final-stage token (32 px)
        # The mask token starts at zero and is never re-initialised (reference §1.2).
        self.masked_embed = nn.Parameter(torch.zeros(1, embed_dim)) if use_mask_token else None

    def embed(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """Patch embedding (with its LayerNorm), masked cells replaced by `masked_embed`: (B, H/4, W/4, C)."""
        B, _, H, W = x.shape
        g = self.mask_grid
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        if masks is None:
            return x
        if self.masked_embed is None:
            raise ValueError("this backbone has no mask token (built with use_mask_token=False)")
        if H % g or W % g or masks.shape != (B, H // g, W // g):
            raise ValueError(
                f"masks must be (B, H/{g}, W/{g}) = {(B, H // g, W // g)} for a {H}x{W} input "
                f"(H and W multiples of {g}), got {tuple(masks.shape)}"
            )
        up = g // self.patch_size  # 8: one 32-px mask cell covers 8x8 embeddings
        masks = masks.repeat_interleave(up, dim=1).repeat_interleave(up, dim=2)  # (B, H/4, W/4)
        return torch.where(masks.unsqueeze(-1), self.masked_embed.to(x.dtype), x)

    @staticmethod
    def with_pseudo_cls(x: Tensor) -> Tensor:
        """(B, h, w, D) final-stage map -> (B, 1+h*w, D): the token average first, then the tokens."""
        tokens = x.flatten(1, 2)  # (B, N, D)
        return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)

    def forward_features(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """Pseudo-[CLS] then the final-stage tokens after the final LayerNorm: (B, 1+N, D)."""
        x = self.layers(self.embed(x, masks))  # (B, H/32, W/32, D)
        return self.with_pseudo_cls(self.norm(x))

    def forward(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """Same as `forward_features` (there is no classifier)."""
        return self.forward_features(x, masks)

    def get_intermediate_layers(self, x: Tensor, n: int = 1, masks: Tensor | None = None) -> list[Tensor]:
        """Outputs of the last `n` blocks, in order, each as (B, 1+N_i, D_i) with its token average first.

        As the authors' Swin: only blocks of the last stage pass through the final LayerNorm; blocks of
        earlier stages (n > depths[-1]) have their stage's width `block_dims[i]` and token count.
        """
        if not 1 <= n <= self.depth:
            raise ValueError(f"n must be in [1, {self.depth}] for this backbone, got {n}")
        x, out, i = self.embed(x, masks), [], 0
        last = len(self.layers) - 1
        for s, stage in enumerate(self.layers):
            x = stage.downsample(x)
            for blk in stage.blocks:
                x = blk(x)  # (B, h, w, C)
                if i >= self.depth - n:
                    out.append(self.with_pseudo_cls(self.norm(x) if s == last else x))
                i += 1
        return out

    def get_stage_outputs(self, x: Tensor) -> list[Tensor]:
        """Each stage's output map (B, C_i, H/s_i, W/s_i) with C_i = `stage_dims[i]`, s_i = `stage_strides[i]`.

        No LayerNorm is applied (the final norm is sized for the last stage only); the multi-scale
        features of Swin for FPN-style necks (strides 4, 8, 16, 32).
        """
        return self.forward_intermediates(x, indices=len(self.layers), norm=False, intermediates_only=True)

    def get_last_selfattention(self, x: Tensor) -> Tensor:
        """Not defined for Swin: raises NotImplementedError (analysis tools can catch it)."""
        raise NotImplementedError(NO_CLS_ATTENTION)

    def layer_id(self, name: str) -> int:
        """Layer-decay id of a parameter name: embeddings 0, block k (over all stages) k + 1, else depth + 1.

        A stage's patch merging (timm puts it at the start of stage i) shares the id of the block before it.
        """
        parts = name.split(".")
        if parts[0] in ("patch_embed", "masked_embed"):
            return 0
        if parts[0] == "layers" and len(parts) > 2:
            s = int(parts[1])
            start = sum(self.depths[:s])
            return start + 1 + int(parts[3]) if parts[2] == "blocks" else start
        return self.depth + 1

    def arch_kwargs(self) -> dict:
        """Plain-typed constructor arguments: enough to rebuild this backbone from a file."""
        return {**self._kwargs, "use_mask_token": self.masked_embed is not None}


def swin(size: str, **kwargs) -> SwinBackbone:
    """A Swin of a registered size; kwargs override (e.g. `window_size=14`, `img_size`, `drop_path_rate`)."""
    dim, depths, heads, drop_path = SWIN_SIZES[size]
    defaults = {"embed_dim": dim, "depths": depths, "num_heads": heads, "drop_path_rate": drop_path}
    return SwinBackbone(**{**defaults, **kwargs})


def swin_size_name(backbone: SwinBackbone) -> str:
    """Registry name whose stem width, depths and heads match (the stored kwargs fix them anyway)."""
    kw = backbone.arch_kwargs()
    key = (kw["embed_dim"], tuple(kw["depths"]), tuple(kw["num_heads"]))
    return next((n for n, (d, ds, hs, _) in SWIN_SIZES.items() if (d, ds, hs) == key), "swin_tiny")
