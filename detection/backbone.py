"""ViT -> 5-level feature pyramid for the R-CNN detectors (reference §3.6, "Backbone wrapper").

Patch tokens after blocks (3, 5, 7, 11) (scaled to the depth), without the final LayerNorm unless
`out_with_norm`, become four stride-p maps; the core's `MultiScaleAdaptor` turns them into strides
4, 8, 16, 32 and torchvision's FPN (256 channels, extra level by max-pooling) adds stride 64.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from pretrain import MultiScaleAdaptor, default_out_indices, feature_maps

# Names of the pyramid levels as torchvision's heads expect them; strides 4, 8, 16, 32 and 64.
LEVEL_NAMES = ("0", "1", "2", "3", "pool")
ROI_LEVELS = ["0", "1", "2", "3"]  # RoIAlign reads strides 4-32
LEVEL_STRIDES = (4, 8, 16, 32, 64)


class ViTFPN(nn.Module):
    """`forward(images (B, 3, H, W)) -> OrderedDict` of five (B, C, H/s, W/s) maps, s = 4 ... 64.

    H and W must be multiples of 32 (torchvision's transform pads batches to that). The position
    embedding is resized by the core ViT to each padded input's grid.

    `bf16` runs the ViT, adaptor and FPN under bf16 autocast on CUDA and returns fp32 maps: the RPN
    and RoI heads stay in fp32, because torchvision decodes boxes in the deltas' dtype and bf16
    coordinates would be off by up to 4 px at 1000 px.

    `use_checkpoint` recomputes the ViT forward during the backward pass (one checkpoint around the
    whole `feature_maps` call, in training only): the block activations are not kept between the
    forward and backward passes. Per-block checkpointing, as the reference does, needs a hook in the
    core's `get_block_outputs`.
    """

    def __init__(
        self,
        vit: nn.Module,
        out_indices: list[int] | None = None,
        out_with_norm: bool = False,
        use_checkpoint: bool = False,
        fpn_channels: int = 256,
        bf16: bool = False,
    ):
        super().__init__()
        self.vit = vit
        self.out_indices = list(out_indices) if out_indices else default_out_indices(vit.depth)
        self.out_with_norm = out_with_norm
        self.use_checkpoint = use_checkpoint
        self.bf16 = bf16
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

    def vit_maps(self, x: Tensor) -> list[Tensor]:
        """Four (B, D, H/p, W/p) maps from the chosen blocks."""
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(feature_maps, self.vit, x, self.out_indices, self.out_with_norm, use_reentrant=False)
        return feature_maps(self.vit, x, self.out_indices, self.out_with_norm)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16 and x.is_cuda):
            levels = self.adaptor(self.vit_maps(x))  # strides 4, 8, 16, 32; D channels each
            out = self.fpn(OrderedDict(zip(LEVEL_NAMES[:4], levels, strict=True)))  # + "pool" (stride 64)
        return OrderedDict((k, v.float()) for k, v in out.items())
