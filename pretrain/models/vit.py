"""The one Vision Transformer of this project, read top to bottom.

patch embedding -> attention -> MLP -> block -> VisionTransformer -> size factories.

State-dict names follow the iBOT authors' and timm's ViT (`cls_token`, `pos_embed`,
`patch_embed.proj`, `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, `norm`) plus the
learned mask token `masked_embed` of the student (iBOT paper, arXiv 2111.07832, Sec. 3.2).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> D-dim embeddings through one strided convolution."""

    def __init__(self, patch_size: int, embed_dim: int, in_chans: int = 3):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)  # (B, D, H/p, W/p)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, D/heads)
        return q, k, v

    def mix(self, x: Tensor) -> Tensor:
        """Attention-weighted values of every token, before the output projection: (B, N, D)."""
        B, N, D = x.shape
        q, k, v = self._qkv(x)
        if x.device.type == "cpu" and q.dtype == torch.bfloat16:
            # Explicit products: in bf16 on CPU they beat the fused kernel (ViT-S/16 shapes, forward +
            # backward: 197 tokens 2.4x, 37 tokens 4.5x as fast; in fp32 within 10%; bench/attention.py).
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        return out.transpose(1, 2).reshape(B, N, D)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.mix(x))

    def attention_weights(self, x: Tensor) -> Tensor:
        """Softmax attention (B, heads, N, N); explicit, since the fused kernel does not return it."""
        q, k, _ = self._qkv(x)
        return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def drop_path(x: Tensor, p: float, training: bool, sample: Tensor | None = None, batch: int = 0) -> Tensor:
    """Stochastic depth: drop the whole residual branch per sample, rescale the survivors.

    When `x` holds rows picked from `batch` images (`Block.forward_rows`), `sample` (rows,) gives each
    row's image; the random draws are then the same as for the whole (batch, tokens, D) tensor.
    """
    if p == 0.0 or not training:
        return x
    n = x.shape[0] if sample is None else batch
    keep = x.new_empty((n,) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - p)
    if sample is not None:
        keep = keep[sample]
    return x * keep / (1.0 - p)


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.drop_path > 0 and x.device.type == "cpu":
            x = self._residual_of_kept(x, lambda t: self.attn(self.norm1(t)))
            return self._residual_of_kept(x, lambda t: self.mlp(self.norm2(t)))
        x = x + drop_path(self.attn(self.norm1(x)), self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)

    def _residual_of_kept(self, x: Tensor, branch) -> Tensor:
        """x + DropPath(branch(x)) with the branch computed for the kept samples only (dropped ones add
        exactly zero). Same random draws and numbers as `drop_path`; used on CPU, where the index
        lookup costs no device sync (ViT-S/16 at drop-path 0.1 skips ~5% of the student's work)."""
        p = self.drop_path
        keep = x.new_empty(x.shape[0]).bernoulli_(1.0 - p)
        kept = keep.nonzero().squeeze(1)
        if len(kept) == len(x):
            return x + branch(x) / (1.0 - p)
        return x.index_add(0, kept, branch(x[kept]) / (1.0 - p))

    def forward_rows(self, x: Tensor, patch_keep: Tensor | None) -> Tensor:
        """The block's output at the [CLS] tokens and the kept patch tokens only: (B + M, D), [CLS] rows
        first, then the kept patches in `x[:, 1:][patch_keep]` order.

        Keys and values still come from every token, but the output projection and the MLP (3/4 of the
        block's products) run on the rows asked for. Row by row the numbers are those of `forward`.
        """
        B = x.shape[0]
        images = torch.arange(B, device=x.device)
        mixed = self.attn.mix(self.norm1(x))
        if patch_keep is None:
            rows, mixed, sample = x[:, 0], mixed[:, 0], images
        else:
            rows = torch.cat([x[:, 0], x[:, 1:][patch_keep]])
            mixed = torch.cat([mixed[:, 0], mixed[:, 1:][patch_keep]])
            sample = torch.cat([images, images.repeat_interleave(patch_keep.sum(1))])
        rows = rows + drop_path(self.attn.proj(mixed), self.drop_path, self.training, sample, B)
        return rows + drop_path(self.mlp(self.norm2(rows)), self.drop_path, self.training, sample, B)


class VisionTransformer(nn.Module):
    """ViT returning all tokens after the final LayerNorm, with an optional learned mask token.

    `masks` (bool, (B, H/p, W/p)) replace the patch embedding by `masked_embed` *before* the
    position embedding is added (masked token = masked_embed + pos_embed), as the authors do.
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        use_mask_token: bool = True,
        pos_grid: Sequence[int] | None = None,
    ):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        # (rows, cols) of the stored position table: square from img_size unless resized at load (`resize_pos_embed`)
        self.pos_grid = (int(pos_grid[0]), int(pos_grid[1])) if pos_grid else (img_size // patch_size,) * 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.pos_grid[0] * self.pos_grid[1] + 1, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim, eps=LN_EPS)
        # The mask token starts at zero and is never re-initialised (reference §1.2).
        self.masked_embed = nn.Parameter(torch.zeros(1, embed_dim)) if use_mask_token else None
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    def interpolate_pos_encoding(self, h: int, w: int) -> Tensor:
        """Position embedding for an (h, w) patch grid: the authors' bicubic rule, from the stored grid.

        The stored (rows, cols) table is kept as is for an (rows, cols) input; otherwise it is resized with
        scale factors (h + 0.1) / rows and (w + 0.1) / cols (the +0.1 dodges floor errors) passed as
        `scale_factor`, which places the samples differently from a size-based resize (timm's). This is
        the pre-training rule (square table) and the authors' detection/segmentation forward rule.
        """
        rows, cols = self.pos_grid
        if (h, w) == (rows, cols):
            return self.pos_embed
        grid = self.pos_embed[:, 1:].reshape(1, rows, cols, -1).permute(0, 3, 1, 2)  # (1, D, rows, cols)
        grid = F.interpolate(
            grid, scale_factor=((h + 0.1) / rows, (w + 0.1) / cols), mode="bicubic", align_corners=False
        )
        if grid.shape[-2:] != (h, w):
            raise ValueError(f"position embedding resized to {tuple(grid.shape[-2:])}, expected {(h, w)}")
        grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)  # (1, h*w, D)
        return torch.cat([self.pos_embed[:, :1], grid], dim=1)

    @torch.no_grad()
    def resize_pos_embed(self, rows: int, cols: int) -> None:
        """Replace the stored position table by a (rows, cols) one, once, at load time: bicubic by target
        size, align_corners off, the [CLS] entry kept (the authors' dense checkpoint loaders; detection
        (800, 1008) px -> 50 x 63, segmentation 512 px -> 32 x 32). Inputs are then resized from it by
        `interpolate_pos_encoding`. A square result also sets `img_size` to rows x patch."""
        if (rows, cols) == self.pos_grid:
            return
        if rows < 1 or cols < 1:
            raise ValueError(f"position grid must be positive, got {(rows, cols)}")
        old_rows, old_cols = self.pos_grid
        table = self.pos_embed[:, 1:].reshape(1, old_rows, old_cols, -1).permute(0, 3, 1, 2)
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", align_corners=False)
        table = torch.cat([self.pos_embed[:, :1], table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)
        self.pos_embed = nn.Parameter(table, requires_grad=self.pos_embed.requires_grad)
        self.pos_grid = (rows, cols)
        if rows == cols:
            self.img_size = rows * self.patch_size

    def prepare_tokens(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        B, _, H, W = x.shape
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"input {H}x{W} is not a multiple of the patch size {p}")
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if masks is not None:
            if self.masked_embed is None:
                raise ValueError("this backbone has no mask token (built with use_mask_token=False)")
            if masks.shape != (B, H // p, W // p):
                raise ValueError(f"masks must be (B, H/p, W/p) = {(B, H // p, W // p)}, got {tuple(masks.shape)}")
            x = torch.where(masks.flatten(1).unsqueeze(-1), self.masked_embed.to(x.dtype), x)
        x = torch.cat([self.cls_token.expand(B, -1, -1).to(x.dtype), x], dim=1)  # (B, 1+N, D)
        return x + self.interpolate_pos_encoding(H // p, W // p).to(x.dtype)

    def forward_features(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        """All tokens ([CLS] first) after the final LayerNorm: (B, 1+N, D)."""
        x = self.prepare_tokens(x, masks)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    forward = forward_features

    def forward_cls_and_patches(
        self, x: Tensor, masks: Tensor | None = None, patch_keep: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """[CLS] tokens (B, D) and the patch tokens at `patch_keep` ((B, N) bool) as (M, D), after the
        final LayerNorm; the same numbers as `forward_features(x, masks)` at those places, with the last
        block's projection and MLP run on those tokens only (training needs no others)."""
        x = self.prepare_tokens(x, masks)
        for blk in self.blocks[:-1]:
            x = blk(x)
        rows = self.norm(self.blocks[-1].forward_rows(x, patch_keep))
        B = x.shape[0]
        return rows[:B], (rows[B:] if patch_keep is not None else None)

    def get_intermediate_layers(self, x: Tensor, n: int = 1, masks: Tensor | None = None) -> list[Tensor]:
        """Outputs of the last `n` blocks, in order, each passed through the final LayerNorm."""
        x = self.prepare_tokens(x, masks)
        out = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i >= len(self.blocks) - n:
                out.append(self.norm(x))
        return out

    def get_block_outputs(self, x: Tensor, indices: Sequence[int], norm: bool = False) -> list[Tensor]:
        """Outputs (B, 1+N, D) of the blocks at `indices` (0-based), optionally through the final norm.

        Dense tasks take e.g. blocks (3, 5, 7, 11) without the norm (detection) or with it (segmentation).
        """
        wanted = {i % self.depth for i in indices}
        x = self.prepare_tokens(x)
        out = {}
        for i, blk in enumerate(self.blocks[: max(wanted) + 1]):
            x = blk(x)
            if i in wanted:
                out[i] = self.norm(x) if norm else x
        return [out[i % self.depth] for i in indices]

    def get_last_selfattention(self, x: Tensor) -> Tensor:
        """Softmax attention of the last block, (B, heads, 1+N, 1+N)."""
        x = self.prepare_tokens(x)
        for blk in self.blocks[:-1]:
            x = blk(x)
        last = self.blocks[-1]
        return last.attn.attention_weights(last.norm1(x))

    def arch_kwargs(self) -> dict:
        """Plain-typed constructor arguments: enough to rebuild this backbone from a file."""
        mlp = self.blocks[0].mlp.fc1
        return {
            "img_size": self.img_size,
            "patch_size": self.patch_size,
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "mlp_ratio": mlp.out_features / self.embed_dim,
            "qkv_bias": self.blocks[0].attn.qkv.bias is not None,
            "use_mask_token": self.masked_embed is not None,
            # only when the table is not img_size's square grid (resized at load for detection)
            **({"pos_grid": list(self.pos_grid)} if self.pos_grid != (self.img_size // self.patch_size,) * 2 else {}),
        }


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# Size factories: (embed_dim, depth, num_heads), mlp ratio 4, qkv bias (reference §1.3).
VIT_SIZES = {
    "vit_tiny": (192, 12, 3),
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}


def vit(size: str, **kwargs) -> VisionTransformer:
    dim, depth, heads = VIT_SIZES[size]
    kwargs = {"embed_dim": dim, "depth": depth, "num_heads": heads, **kwargs}
    return VisionTransformer(**kwargs)
