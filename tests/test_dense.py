"""Shared dense-task pieces: feature maps, the multi-scale adaptor, layer-decay groups."""

import pytest
import torch
from torch import nn

from evalkit import (
    MultiScaleAdaptor,
    backbone_layer_id,
    default_out_indices,
    feature_maps,
    layer_decay_param_groups,
    vit_layer_id,
)
from pretrain import build_backbone
from tests.helpers.swin import tiny_swin


def test_out_indices_scale_with_depth():
    assert default_out_indices(12) == [3, 5, 7, 11]
    assert default_out_indices(24) == [7, 11, 15, 23]


@pytest.mark.parametrize("patch", [8, 16])
def test_adaptor_strides(patch):
    vit = build_backbone("vit_tiny", depth=2, patch_size=patch, img_size=64)
    x = torch.randn(1, 3, 64, 96)  # non-square
    maps = feature_maps(vit, x, [0, 1, 1, 1], norm=False)
    assert maps[0].shape == (1, 192, 64 // patch, 96 // patch)
    outs = MultiScaleAdaptor(192, patch)(maps)
    assert [tuple(o.shape[-2:]) for o in outs] == [(64 // s, 96 // s) for s in (4, 8, 16, 32)]
    with pytest.raises(ValueError, match="patch 8 and 16"):
        MultiScaleAdaptor(192, 14)


def test_layer_ids_and_decay_table():
    depth, ld = 12, 0.75
    assert vit_layer_id("pos_embed", depth) == 0 and vit_layer_id("patch_embed.proj.weight", depth) == 0
    assert vit_layer_id("blocks.0.attn.qkv.weight", depth) == 1
    assert vit_layer_id("blocks.11.mlp.fc2.bias", depth) == 12
    assert vit_layer_id("norm.weight", depth) == 13 and vit_layer_id("head.weight", depth) == 13
    assert vit_layer_id("backbone.cls_token", depth, prefix="backbone.") == 0
    assert vit_layer_id("neck.conv.weight", depth, prefix="backbone.") == 13
    vit = build_backbone("vit_tiny", depth=depth, img_size=32, patch_size=16)
    groups = layer_decay_param_groups(vit.named_parameters(), depth, ld, 0.05, no_decay_names=["pos_embed"])
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["pos_embed"]["lr_scale"] == pytest.approx(ld**13) and by_name["pos_embed"]["weight_decay"] == 0
    assert by_name["cls_token"]["weight_decay"] == 0.05  # not in no_decay_names: multi-dim, decayed
    assert by_name["blocks.3.attn.qkv.weight"]["lr_scale"] == pytest.approx(ld ** (12 - 3))
    assert by_name["blocks.3.attn.qkv.bias"]["weight_decay"] == 0.0
    assert by_name["norm.weight"]["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups) == len(list(vit.parameters()))


def test_swin_layer_ids_through_the_hook():
    """Hand-checked ids of a Swin with depths (2, 2, 2, 2): 8 blocks, so the head and final norm get 9."""
    swin = tiny_swin()
    rule = backbone_layer_id(swin)
    assert rule("patch_embed.proj.weight") == 0 and rule("masked_embed") == 0
    assert rule("layers.0.blocks.0.attn.qkv.weight") == 1 and rule("layers.0.blocks.1.mlp.fc1.weight") == 2
    assert rule("layers.1.downsample.reduction.weight") == 2  # patch merging: the id of the block before it
    assert rule("layers.1.blocks.0.norm1.weight") == 3 and rule("layers.3.blocks.1.mlp.fc2.bias") == 8
    assert rule("norm.weight") == 9
    vit_rule = backbone_layer_id(build_backbone("vit_tiny", depth=2, img_size=32, patch_size=16))
    assert (vit_rule("pos_embed"), vit_rule("blocks.1.attn.qkv.weight"), vit_rule("norm.weight")) == (0, 2, 3)
    head = nn.Linear(192, 3)
    named = [(f"backbone.{n}", p) for n, p in swin.named_parameters()] + list(head.named_parameters(prefix="head"))
    groups = layer_decay_param_groups(named, swin.depth, 0.5, 0.05, backbone_prefix="backbone.", layer_id=rule)
    by_name = {n: g for g in groups for n in g["names"]}
    expected = {
        "backbone.patch_embed.proj.weight": 0, "backbone.layers.0.blocks.1.attn.qkv.weight": 2,
        "backbone.layers.1.downsample.reduction.weight": 2, "backbone.layers.2.blocks.0.mlp.fc1.weight": 5,
        "backbone.norm.weight": 9, "head.weight": 9, "head.bias": 9,
    }  # fmt: skip
    for name, lid in expected.items():
        assert by_name[name]["layer_id"] == lid and by_name[name]["lr_scale"] == pytest.approx(0.5 ** (9 - lid)), name
    assert by_name["backbone.layers.1.downsample.reduction.weight"]["weight_decay"] == 0.05
    assert by_name["backbone.layers.1.downsample.norm.bias"]["weight_decay"] == 0.0
    table = "backbone.layers.0.blocks.1.attn.relative_position_bias_table"  # 2-D, yet never decayed (Swin's rule)
    assert by_name[table]["weight_decay"] == 0.0 and by_name[table]["layer_id"] == 2
    assert sum(len(g["params"]) for g in groups) == len(named)
    # without the hook the ViT rule sees no `blocks.i`: every Swin block would land in the head's group
    plain = layer_decay_param_groups(named, swin.depth, 0.5, 0.05, backbone_prefix="backbone.")
    assert {g["layer_id"] for g in plain} == {0, 9}
