"""Backbone registry, shapes for any input size, masking, head variants, and the import boundary."""

from pathlib import Path

import pytest
import torch

from pretrain import IBOTHead, build_backbone
from pretrain.models.backbones import ARCHS


def tiny(**kw):
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8, **kw)


def test_registry_and_unknown_name():
    assert {"vit_tiny", "vit_small", "vit_base", "vit_large"} <= set(ARCHS)
    with pytest.raises(ValueError, match="vit_small"):
        build_backbone("vit_huge")


@pytest.mark.parametrize("arch,dim,depth,heads", [("vit_small", 384, 12, 6), ("vit_base", 768, 12, 12)])
def test_sizes(arch, dim, depth, heads):
    m = build_backbone(arch, patch_size=16)
    assert (m.embed_dim, m.depth, m.num_heads, m.patch_size) == (dim, depth, heads, 16)
    assert m.pos_embed.shape == (1, 197, dim)


def test_state_dict_names():
    names = set(tiny().state_dict())
    for k in [
        "cls_token",
        "pos_embed",
        "masked_embed",
        "patch_embed.proj.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.0.attn.proj.bias",
        "blocks.0.mlp.fc1.weight",
        "blocks.0.mlp.fc2.bias",
        "blocks.0.norm2.weight",
        "norm.weight",
    ]:
        assert k in names
    assert "masked_embed" not in tiny(use_mask_token=False).state_dict()


def test_non_square_input_and_methods():
    m = tiny().eval()
    x = torch.randn(2, 3, 40, 24)  # 5 x 3 grid
    with torch.no_grad():
        tokens = m.forward_features(x)
        attn = m.get_last_selfattention(x)
        inter = m.get_intermediate_layers(x, n=2)
    assert tokens.shape == (2, 16, 192)
    assert attn.shape == (2, 3, 16, 16)
    assert len(inter) == 2 and torch.allclose(inter[-1], tokens, atol=1e-5)
    with torch.no_grad():
        raw = m.get_block_outputs(x, [0, 1])
        normed = m.get_block_outputs(x, [-1], norm=True)
    assert torch.allclose(m.norm(raw[0]), inter[0], atol=1e-5) and torch.allclose(normed[0], tokens, atol=1e-5)
    assert not torch.allclose(raw[1], tokens, atol=1e-3)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        m.forward_features(torch.randn(1, 3, 30, 32))


def test_cpu_attention_matches_the_fused_kernel():
    """In bf16 on CPU the block multiplies explicitly (faster there); it must give the fused kernel's
    numbers (computed in fp32 here) up to bf16 rounding."""
    m = tiny().eval()
    x = torch.randn(2, 17, 192)
    attn = m.blocks[0].attn
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        q, k, v = (t.float() for t in attn._qkv(x))
        mixed = attn.mix(x)
    fused = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 17, 192)
    assert mixed.dtype == torch.bfloat16 and (mixed.float() - fused).abs().max() < 0.02
    with torch.no_grad():
        q, k, v = attn._qkv(x)
        explicit = attn.proj((attn.attention_weights(x) @ v).transpose(1, 2).reshape(2, 17, 192))
        assert torch.allclose(attn(x), explicit, atol=1e-5)


@pytest.mark.parametrize("bf16", [False, True])
def test_training_forward_on_kept_rows_gives_the_full_numbers(bf16):
    """The student's last block runs projection + MLP on [CLS] and masked tokens only; with drop-path
    active and the same seed, those rows equal the full forward's (up to the rounding of products
    over fewer rows), in fp32 and bf16."""
    torch.manual_seed(0)
    m = tiny(drop_path_rate=0.4).train()
    x, masks = torch.randn(6, 3, 32, 32), torch.rand(6, 4, 4) < 0.4
    masks[0] = False  # an image without masked tokens
    keep = masks.flatten(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        torch.manual_seed(3)
        full = m(x, masks)
        torch.manual_seed(3)
        cls, patches = m.forward_cls_and_patches(x, masks, keep)
        torch.manual_seed(3)
        full_local = m(x)
        torch.manual_seed(3)
        cls_local, none = m.forward_cls_and_patches(x)
    assert patches.shape == (int(keep.sum()), 192) and none is None
    tol = 2e-2 if bf16 else 1e-5  # a bf16 ulp at |x| ~ 4 is 0.016
    for got, want in [(cls, full[:, 0]), (patches, full[:, 1:][keep]), (cls_local, full_local[:, 0])]:
        assert (got.float() - want.float()).abs().max() <= tol
    torch.manual_seed(4)  # another draw of drop-path: the rows change with it
    assert not torch.allclose(m.forward_cls_and_patches(x, masks, keep)[0], cls.float(), atol=0.1)


def test_drop_path_on_cpu_skips_the_dropped_samples():
    """Dropped samples skip the branch (it would add exactly zero); kept ones get the usual rescaled
    branch, with the same random draws as `drop_path` on the whole batch."""
    from pretrain.models.vit import drop_path

    block = tiny(drop_path_rate=0.5).blocks[1].train()  # rate 0.5 in the last of 2 blocks
    x = torch.randn(8, 5, 192)
    seen = []
    block.mlp.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    torch.manual_seed(1)
    out = block(x)
    torch.manual_seed(1)
    ref = x + drop_path(block.attn(block.norm1(x)), 0.5, True)
    ref = ref + drop_path(block.mlp(block.norm2(ref)), 0.5, True)
    assert torch.allclose(out, ref, atol=1e-6)
    torch.manual_seed(1)
    keep_attn, keep_mlp = torch.empty(8).bernoulli_(0.5), torch.empty(8).bernoulli_(0.5)
    assert seen[0] == int(keep_mlp.sum()) < 8  # the MLP ran on the kept samples only
    both = (keep_attn == 0) & (keep_mlp == 0)
    assert both.any() and torch.equal(out[both], x[both])


def test_masks_replace_patch_embeddings():
    m = tiny().eval()
    with torch.no_grad():
        m.masked_embed.normal_()
    x = torch.randn(2, 3, 32, 32)
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 1, 2] = True
    with torch.no_grad():
        a, b = m.forward_features(x), m.forward_features(x, masks)
        assert torch.equal(a[1], b[1])  # image without masked patches is untouched
        assert not torch.allclose(a[0], b[0])
        tokens = m.prepare_tokens(x, masks)
        assert torch.allclose(tokens[0, 1 + 1 * 4 + 2], m.masked_embed[0] + m.pos_embed[0, 1 + 6], atol=1e-6)
    with pytest.raises(ValueError, match="masks must be"):
        m.forward_features(x, masks[:, :3])
    with pytest.raises(ValueError, match="no mask token"):
        tiny(use_mask_token=False).forward_features(x, masks)


def test_drop_path_only_in_training():
    m = tiny(drop_path_rate=0.5)
    x = torch.randn(4, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
    m.train()
    with torch.no_grad():
        assert not torch.equal(m(x), m(x))


def test_head_shared_and_separate():
    tokens = torch.randn(2, 5, 192)
    shared = IBOTHead(192, out_dim=64, shared_head=True, hidden_dim=32, bottleneck_dim=16)
    cls, patch = shared(tokens)
    assert cls.shape == (2, 64) and patch.shape == (2, 4, 64)
    assert not any(k.startswith("last_layer2") for k in shared.state_dict())
    sep = IBOTHead(192, out_dim=64, patch_out_dim=48, shared_head=False, hidden_dim=32, bottleneck_dim=16)
    cls, patch = sep(tokens)
    assert patch.shape == (2, 4, 48)
    assert torch.allclose(sep.forward_cls(tokens[:, 0]), cls, atol=1e-6)
    assert torch.allclose(sep.forward_patches(tokens[:, 1:]), patch, atol=1e-6)
    for head in (shared, sep):  # the student's one-call path gives the per-part numbers
        rows_cls, rows_patch = head.forward_student(tokens[:, 0], tokens[0, 1:])
        assert torch.allclose(rows_cls, head.forward_cls(tokens[:, 0]), atol=1e-6)
        assert torch.allclose(rows_patch, head.forward_patches(tokens[0, 1:]), atol=1e-6)
    # norm_last_layer freezes g = 1: every prototype has unit norm.
    assert not sep.last_layer.weight_g.requires_grad
    assert torch.allclose(sep.last_layer.weight.norm(dim=1), torch.ones(64), atol=1e-5)
    assert IBOTHead(192, out_dim=8, norm_last_layer=False).last_layer.weight_g.requires_grad


EVAL_PACKAGES = ["eval_knn", "eval_linear", "finetune", "detection", "segmentation", "analysis"]
ROOT = Path(__file__).resolve().parents[1]
