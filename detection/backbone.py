"""ViT or Swin -> 5-level feature pyramid for the R-CNN detectors (reference §3.6, "Backbone wrapper").

ViT (`ViTFPN`): patch tokens after blocks (3, 5, 7, 11) (scaled to the depth), without the final
LayerNorm unless `out_with_norm`, become four stride-p maps; the core's `MultiScaleAdaptor` turns them
into strides 4, 8, 16, 32 and torchvision's FPN (256 channels, extra level by max-pooling) adds stride 64.
The position embedding, as in the authors' path (`model.resize_pos_embed`, `resize_pos_embed_at_load`):
resized once at load to the grid of `model.pos_embed_size` (their `img_size`, (800, 1008) px -> 50 x 63
for ViT-S/16), then at every forward from that grid to the input's by the core ViT's +0.1 scale-factor
rule; with `model.resize_pos_embed=false` each input's grid is resized straight from the pre-training one.

Swin (`SwinFPN`): the four stage outputs (strides 4, 8, 16, 32, widths `stage_dims`), each through its
own new LayerNorm over the channels (norm0..norm3, as the Swin detection backbones add), go straight
into the FPN; no adaptor. `build_fpn` picks the class from the backbone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from evalkit import MultiScaleAdaptor, default_out_indices, feature_maps
from plumbing import ConfigError, autocast
from pretrain import SwinBackbone

# Names of the pyramid levels as torchvision's heads expect them; strides 4, 8, 16, 32 and 64.
LEVEL_NAMES = ("0", "1", "2", "3", "pool")
ROI_LEVELS = ["0", "1", "2", "3"]  # RoIAlign reads strides 4-32
LEVEL_STRIDES = (4, 8, 16, 32, 64)


class ViTFPN(nn.Module):
    """`forward(images (B, 3, H, W)) -> OrderedDict` of five (B, C, H/s, W/s) maps, s = 4 ... 64.

    H and W must be multiples of 32 (torchvision's transform pads batches to that). The position
    embedding is resized by the core ViT to each padded input's grid.

    `precision` (auto | fp32 | bf16, `pretrain.autocast`'s rule) runs the ViT, adaptor and FPN under
    bf16 autocast on the input's device type when it resolves to bf16, and returns fp32 maps: the RPN
    and RoI heads stay in fp32, because torchvision decodes boxes in the deltas' dtype and bf16
    coordinates would be off by up to 4 px at 1000 px.

    `use_checkpoint` recomputes the ViT forward during the backward pass (one checkpoint around the
    whole `feature_maps` call, in training only): the block activations are not kept between the
    forward and backward passes. Per-block checkpointing, as the reference does, needs a hook in the
    core's `get_block_outputs`.
    """

    body_name = "vit"  # the attribute holding the core backbone (parameter names `vit.*`)

    def __init__(
        self,
        vit: nn.Module,
        out_indices: list[int] | None = None,
        out_with_norm: bool = False,
        use_checkpoint: bool = False,
        fpn_channels: int = 256,
        precision: str = "fp32",
    ):
        super().__init__()
        self.vit = vit
        self.out_indices = list(out_indices) if out_indices else default_out_indices(vit.depth)
        self.out_with_norm = out_with_norm
        self.use_checkpoint = use_checkpoint
        self.precision = precision
        D = vit.embed_dim
        self.adaptor = MultiScaleAdaptor(D, vit.patch_size)
        self.fpn = FeaturePyramidNetwork([D] * 4, fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels  # read by torchvision's detectors
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """Parameters detection never uses get no gradient (DDP would stall on them otherwise).

        The mask token, the final norm without `out_with_norm`, and blocks after the last taken one.
        AdamW skips parameters without gradients, so this matches keeping them in the optimiser.
        """
        last = max(i % self.vit.depth for i in self.out_indices)
        unused = [blk for i, blk in enumerate(self.vit.blocks) if i > last]
        if not self.out_with_norm:
            unused.append(self.vit.norm)
        for module in unused:
            module.requires_grad_(False)
        for name, p in self.vit.named_parameters(recurse=False):
            if name == "masked_embed":
                p.requires_grad_(False)

    @property
    def body(self) -> nn.Module:
        """The core ViT."""
        return self.vit

    def vit_maps(self, x: Tensor) -> list[Tensor]:
        """Four (B, D, H/p, W/p) maps from the chosen blocks."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(feature_maps, self.vit, x, self.out_indices, self.out_with_norm, use_reentrant=False)
        return feature_maps(self.vit, x, self.out_indices, self.out_with_norm)

    def levels(self, x: Tensor) -> list[Tensor]:
        """The adaptor's four maps (strides 4, 8, 16, 32; D channels each): the authors' backbone output."""
        return self.adaptor(self.vit_maps(x))

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        with autocast(x.device, self.precision):
            levels = self.levels(x)  # strides 4, 8, 16, 32; D channels each
            out = self.fpn(OrderedDict(zip(LEVEL_NAMES[:4], levels, strict=True)))  # + "pool" (stride 64)
        return OrderedDict((k, v.float()) for k, v in out.items())


class SwinFPN(nn.Module):
    """Swin stage outputs -> `forward(images (B, 3, H, W)) -> OrderedDict` of five (B, C, H/s, W/s) maps.

    H and W must be multiples of 32 (torchvision's transform pads batches to that). Each stage output
    passes through its own LayerNorm over the channels (`norms[i]`, new weights); the final norm and
    the mask token are unused and frozen. `use_checkpoint` and `precision` as in `ViTFPN`.
    """

    body_name = "swin"  # the attribute holding the core backbone (parameter names `swin.*`)

    def __init__(self, swin: nn.Module, use_checkpoint: bool = False, fpn_channels: int = 256, precision: str = "fp32"):
        super().__init__()
        self.swin = swin
        self.use_checkpoint, self.precision = use_checkpoint, precision
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=swin.norm.eps) for c in swin.stage_dims)
        self.fpn = FeaturePyramidNetwork(list(swin.stage_dims), fpn_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels  # read by torchvision's detectors
        swin.norm.requires_grad_(False)  # sized for the last stage only; the stage norms replace it
        if swin.masked_embed is not None:
            swin.masked_embed.requires_grad_(False)

    @property
    def body(self) -> nn.Module:
        """The core Swin."""
        return self.swin

    def stage_maps(self, x: Tensor) -> list[Tensor]:
        """Four (B, C_i, H/s_i, W/s_i) maps, s_i = 4, 8, 16, 32, each normalised over C_i."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            maps = checkpoint(self.swin.get_stage_outputs, x, use_reentrant=False)
        else:
            maps = self.swin.get_stage_outputs(x)
        # LayerNorm over channels: (B, C, h, w) -> (B, h, w, C) -> norm -> back
        return [norm(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, m in zip(self.norms, maps, strict=True)]

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        with autocast(x.device, self.precision):
            levels = self.stage_maps(x)  # strides 4, 8, 16, 32; stage_dims channels
            out = self.fpn(OrderedDict(zip(LEVEL_NAMES[:4], levels, strict=True)))  # + "pool" (stride 64)
        return OrderedDict((k, v.float()) for k, v in out.items())


def resize_pos_embed_at_load(backbone: nn.Module, image_size: Sequence[int]) -> None:
    """The authors' load-time resize of a ViT's position table to the grid of `image_size` (height, width
    in pixels, floor-divided by the patch; bicubic by target size, [CLS] kept; `VisionTransformer.resize_pos_embed`).

    Done once on the copy a detector is built on: its files then store the resized table and its grid
    (`arch_kwargs()["pos_grid"]`), so rebuilding one never resizes again. A Swin has no table: no-op.
    """
    if isinstance(backbone, SwinBackbone):
        return
    p = backbone.patch_size
    if len(image_size) != 2 or min(image_size) < p:
        raise ConfigError(f"model.pos_embed_size must be [height, width] of at least {p} px, got {list(image_size)}")
    backbone.resize_pos_embed(int(image_size[0]) // p, int(image_size[1]) // p)


def build_fpn(
    backbone: nn.Module,
    out_indices: list[int] | None = None,
    out_with_norm: bool = False,
    use_checkpoint: bool = False,
    fpn_channels: int = 256,
    precision: str = "fp32",
) -> ViTFPN | SwinFPN:
    """`SwinFPN` for a Swin backbone, else `ViTFPN`.

    For Swin, `out_indices` must stay unset (the four stages are the outputs) and `out_with_norm` has no
    effect (the stage norms are always on).
    """
    if isinstance(backbone, SwinBackbone):
        if out_indices:
            raise ConfigError(f"model.out_indices={out_indices} picks ViT blocks; a Swin's outputs are its 4 stages")
        return SwinFPN(backbone, use_checkpoint, fpn_channels, precision)
    return ViTFPN(backbone, out_indices, out_with_norm, use_checkpoint, fpn_channels, precision)
