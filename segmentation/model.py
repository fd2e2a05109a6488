"""Segmentation models on the core ViT: backbone adapter, UperNet + auxiliary FCN head, linear head.

Reference §3.7 (mmseg 0.12 configs of the iBOT authors), written here in plain PyTorch:
- adapter: blocks (3, 5, 7, 11) (scaled to the depth) as (B, D, H/16, W/16) maps, each through the final
  LayerNorm (`out_with_norm`), then the multi-scale adaptor to strides 4/8/16/32 for UperNet;
- UperNet (Xiao et al. 2018): PPM (pool scales 1, 2, 3, 6) on the stride-32 map, FPN top-down fusion,
  3x3 fusion of the four levels, all with `channels` = D, BN + ReLU, dropout 0.1 before the classifier;
  auxiliary FCN head on the stride-16 map (one 3x3 conv of 256 channels, dropout 0.1, weight 0.4);
- linear head: one 1x1 conv on the concatenation of the four normalised stride-16 maps (no BN, no
  dropout), the whole backbone frozen in eval mode.

On a core Swin (`SwinDenseEncoder`): the four stage outputs (strides 4/8/16/32, widths `stage_dims`),
each through its own new LayerNorm over the channels (as the Swin segmentation backbones add), no
adaptor; UperNet's levels and the auxiliary head (stride-16 stage) take the stage widths. The linear
head on Swin is the same `resize_concat` 1x1 conv: the four normalised stage maps bilinearly resized to
the stride-4 map and concatenated (sum(stage_dims) channels), the backbone and its stage norms frozen
(the fresh norms then only standardise each stage's channels). Swin has no position embedding to resize.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from evalkit import MultiScaleAdaptor, default_out_indices, feature_maps
from plumbing import ConfigError
from pretrain import SwinBackbone


def resize(x: Tensor, size: Sequence[int]) -> Tensor:
    """Bilinear resize with align_corners=False (the configs' setting)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class ConvBNReLU(nn.Sequential):
    """mmcv ConvModule: conv without bias, BN, ReLU; Kaiming (fan_out) init."""

    def __init__(self, cin: int, cout: int, kernel: int):
        conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        super().__init__(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Classifier(nn.Sequential):
    """Dropout2d (if any) and the 1x1 `conv_seg`, initialised N(0, 0.01) as in mmseg."""

    def __init__(self, cin: int, num_classes: int, dropout: float):
        conv = nn.Conv2d(cin, num_classes, 1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        super().__init__(nn.Dropout2d(dropout) if dropout > 0 else nn.Identity(), conv)


def level_channels(in_ch: int | Sequence[int], levels: int = 4) -> list[int]:
    """Channels of each input level: one width for all (ViT) or one per level (Swin stages)."""
    chs = [int(in_ch)] * levels if isinstance(in_ch, int) else [int(c) for c in in_ch]
    if len(chs) != levels:
        raise ValueError(f"expected {levels} level widths, got {chs}")
    return chs


class UperNetHead(nn.Module):
    """PPM + FPN over four maps (strides 4..32) -> logits (B, K, H/4, W/4); `in_ch` one width or four."""

    def __init__(
        self, in_ch: int | Sequence[int], ch: int, num_classes: int, pool_scales=(1, 2, 3, 6), dropout: float = 0.1
    ):
        super().__init__()
        chs = level_channels(in_ch)
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), ConvBNReLU(chs[3], ch, 1)) for s in pool_scales)
        self.ppm_bottleneck = ConvBNReLU(chs[3] + len(pool_scales) * ch, ch, 3)
        self.lateral = nn.ModuleList(ConvBNReLU(c, ch, 1) for c in chs[:3])
        self.fpn = nn.ModuleList(ConvBNReLU(ch, ch, 3) for _ in range(3))
        self.fpn_bottleneck = ConvBNReLU(4 * ch, ch, 3)
        self.classifier = Classifier(ch, num_classes, dropout)

    def pyramid_pooling(self, x: Tensor) -> Tensor:
        """(B, C, h, w) -> (B, ch, h, w): x and its pooled versions, upsampled and fused."""
        pooled = [resize(branch(x), x.shape[-2:]) for branch in self.ppm]
        return self.ppm_bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats[:3], strict=True)]
        laterals.append(self.pyramid_pooling(feats[3]))  # 4 x (B, ch, H/s, W/s), s = 4, 8, 16, 32
        for i in range(3, 0, -1):  # top-down: add the coarser level, upsampled
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(x) for conv, x in zip(self.fpn, laterals[:3], strict=True)] + [laterals[3]]
        size = outs[0].shape[-2:]
        fused = self.fpn_bottleneck(torch.cat([resize(o, size) for o in outs], dim=1))  # (B, ch, H/4, W/4)
        return self.classifier(fused)


class FCNAuxHead(nn.Module):
    """Auxiliary FCN head on one map: 3x3 conv-BN-ReLU, dropout, 1x1 classifier."""

    def __init__(self, in_ch: int, ch: int, num_classes: int, dropout: float = 0.1):
        super().__init__()
        self.conv = ConvBNReLU(in_ch, ch, 3)
        self.classifier = Classifier(ch, num_classes, dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.conv(x))


class LinearHead(nn.Module):
    """1x1 conv on the maps resized to the first one's size and concatenated (sum of their channels).

    `in_ch`: one width for all `num_inputs` maps (ViT: 4D channels) or one per map (Swin stages).
    """

    def __init__(self, in_ch: int | Sequence[int], num_classes: int, num_inputs: int = 4):
        super().__init__()
        self.classifier = Classifier(sum(level_channels(in_ch, num_inputs)), num_classes, dropout=0.0)

    def forward(self, feats: Sequence[Tensor]) -> Tensor:
        size = feats[0].shape[-2:]
        return self.classifier(torch.cat([resize(f, size) for f in feats], dim=1))  # (B, K, H/p, W/p)


class ViTDenseEncoder(nn.Module):
    """The core ViT as a dense backbone: four block outputs as maps, optionally through the adaptor."""

    body_name = "vit"  # the attribute holding the core backbone (parameter names `vit.*`)

    def __init__(self, vit: nn.Module, out_indices: Sequence[int], out_with_norm: bool, multi_scale: bool):
        super().__init__()
        self.vit, self.out_indices, self.out_with_norm = vit, list(out_indices), out_with_norm
        self.adaptor = MultiScaleAdaptor(vit.embed_dim, vit.patch_size) if multi_scale else None
        self.out_channels = [vit.embed_dim] * 4

    @property
    def body(self) -> nn.Module:
        """The core ViT."""
        return self.vit

    def maps(self, x: Tensor) -> list[Tensor]:
        """The four chosen block outputs as (B, D, H/p, W/p) maps (through the final norm if `out_with_norm`)."""
        return feature_maps(self.vit, x, self.out_indices, self.out_with_norm)

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = self.maps(x)  # 4 x (B, D, H/p, W/p)
        return self.adaptor(maps) if self.adaptor is not None else maps


class SwinDenseEncoder(nn.Module):
    """The core Swin as a dense backbone: its four stage outputs, each through its own LayerNorm over C."""

    body_name = "swin"  # the attribute holding the core backbone (parameter names `swin.*`)

    def __init__(self, swin: nn.Module):
        super().__init__()
        self.swin = swin
        self.norms = nn.ModuleList(nn.LayerNorm(c, eps=swin.norm.eps) for c in swin.stage_dims)
        self.out_channels = list(swin.stage_dims)

    @property
    def body(self) -> nn.Module:
        """The core Swin."""
        return self.swin

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = self.swin.get_stage_outputs(x)  # 4 x (B, C_i, H/s_i, W/s_i), s_i = 4, 8, 16, 32
        # LayerNorm over channels: (B, C, h, w) -> (B, h, w, C) -> norm -> back
        return [norm(m.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) for norm, m in zip(self.norms, maps, strict=True)]


class Segmentor(nn.Module):
    """Encoder + decode head (+ auxiliary head). `forward(x)` -> (logits, aux logits or None) at the
    heads' resolution; `encode_decode(x)` -> logits resized to x. A frozen backbone stays in eval mode."""

    def __init__(
        self,
        backbone: ViTDenseEncoder | SwinDenseEncoder,
        decode_head: nn.Module,
        aux_head: nn.Module | None,
        frozen: bool,
    ):
        super().__init__()
        self.backbone, self.decode_head, self.aux_head, self.frozen = backbone, decode_head, aux_head, frozen
        self.aux_index = 2  # the stride-16 level
        if frozen:
            backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> Segmentor:
        """As nn.Module.train, but a frozen backbone stays in eval mode (BN/dropout/drop path off)."""
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            feats = self.backbone(x)
        logits = self.decode_head(feats)
        aux = self.aux_head(feats[self.aux_index]) if self.aux_head is not None and self.training else None
        return logits, aux

    def encode_decode(self, x: Tensor) -> Tensor:
        """(B, 3, H, W), H and W multiples of the patch (Swin: 32 px) -> logits (B, K, H, W)."""
        return resize(self(x)[0], x.shape[-2:])


def freeze_unused(vit: nn.Module, out_indices: Sequence[int], out_with_norm: bool) -> None:
    """Parameters no output depends on get no gradient (mask token, later blocks, unused norm): DDP
    would otherwise wait for their gradients, and AdamW would decay them for nothing. For a Swin: the
    mask token and the final norm (the stage norms replace it)."""
    if getattr(vit, "masked_embed", None) is not None:
        vit.masked_embed.requires_grad_(False)
    if isinstance(vit, SwinBackbone):
        vit.norm.requires_grad_(False)
        return
    last = max(i % vit.depth for i in out_indices)
    for blk in vit.blocks[last + 1 :]:
        blk.requires_grad_(False)
    if not out_with_norm:
        vit.norm.requires_grad_(False)


def build_segmentor(
    vit: nn.Module,
    head: str,
    num_classes: int,
    out_indices: Sequence[int] | None = None,
    out_with_norm: bool = True,
    channels: int | None = None,
    aux_channels: int = 256,
    dropout: float = 0.1,
) -> Segmentor:
    """UperNet (trained end to end) or linear (backbone frozen) segmentor around a core ViT or Swin.

    For a Swin, `out_indices` must be None (the four stages are the outputs) and `out_with_norm` has no
    effect (the stage norms are always on); `channels` defaults to the final width D in both cases.
    """
    if head not in ("upernet", "linear"):
        raise ValueError(f"unknown head {head!r}; valid: upernet, linear")
    if isinstance(vit, SwinBackbone):
        if out_indices is not None:
            raise ConfigError(f"out_indices={list(out_indices)} picks ViT blocks; a Swin's outputs are its 4 stages")
        encoder, indices = SwinDenseEncoder(vit), []
    else:
        indices = list(out_indices) if out_indices is not None else default_out_indices(vit.depth)
        if len(indices) != 4:
            raise ValueError(f"out_indices must name 4 blocks, got {indices}")
        encoder = ViTDenseEncoder(vit, indices, out_with_norm, multi_scale=head == "upernet")
    chs = encoder.out_channels  # per level: [D] * 4 (ViT) or stage_dims (Swin)
    if head == "linear":
        return Segmentor(encoder, LinearHead(chs, num_classes), None, frozen=True)
    decode = UperNetHead(chs, channels or vit.embed_dim, num_classes, dropout=dropout)
    aux = FCNAuxHead(chs[2], aux_channels, num_classes, dropout=dropout)  # the stride-16 level
    freeze_unused(vit, indices, out_with_norm)
    return Segmentor(encoder, decode, aux, frozen=False)


def seg_loss(logits: Tensor, aux: Tensor | None, labels: Tensor, aux_weight: float) -> dict[str, Tensor]:
    """Pixel cross-entropy of the upsampled logits (+ aux_weight x the auxiliary one).

    As in mmseg 0.12, the per-pixel losses are averaged over *all* pixels, ignored ones counting 0
    (so a crop without labelled pixels gives 0, never NaN).
    """

    def ce(x: Tensor) -> Tensor:
        x = resize(x.float(), labels.shape[-2:])  # (B, K, H, W)
        return F.cross_entropy(x, labels, ignore_index=255, reduction="none").mean()

    out = {"decode": ce(logits)}
    out["loss"] = out["decode"]
    if aux is not None:
        out["aux"] = aux_weight * ce(aux)
        out["loss"] = out["loss"] + out["aux"]
    return out


def resize_pos_embed(vit: nn.Module, grid: int) -> None:
    """Bicubic, size-based resize of the position embedding to a grid x grid table at load time, as the
    authors' segmentation checkpoint loader does for `img_size=[512]` (32 x 32 at patch 16); each input's
    grid is then resized from it by the core ViT's +0.1 scale-factor rule, as their forward does
    (`VisionTransformer.resize_pos_embed`; the [CLS] entry kept, align_corners off; `img_size` becomes
    grid x patch). `resize_pos_embed=false` in the config skips it: inputs resized from the pre-training grid.
    """
    vit.resize_pos_embed(grid, grid)
