"""Shared dense-task pieces: feature maps, the multi-scale adaptor, layer-decay groups."""

import pytest
import torch

from pretrain import (
    MultiScaleAdaptor,
    build_backbone,
    default_out_indices,
    feature_maps,
    layer_decay_param_groups,
    vit_layer_id,
)


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
