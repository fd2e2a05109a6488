"""Backbone registry, shapes for any input size, masking, head variants, and the import boundary."""

import ast
from pathlib import Path

import pytest
import torch

from pretrain import ARCHS, IBOTHead, build_backbone


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


def test_sdpa_matches_explicit_attention():
    m = tiny().eval()
    x = torch.randn(1, 17, 192)
    attn = m.blocks[0].attn
    with torch.no_grad():
        q, k, v = attn._qkv(x)
        explicit = attn.proj((attn.attention_weights(x) @ v).transpose(1, 2).reshape(1, 17, 192))
        assert torch.allclose(attn(x), explicit, atol=1e-5)


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
    # norm_last_layer freezes g = 1: every prototype has unit norm.
    assert not sep.last_layer.weight_g.requires_grad
    assert torch.allclose(sep.last_layer.weight.norm(dim=1), torch.ones(64), atol=1e-5)
    assert IBOTHead(192, out_dim=8, norm_last_layer=False).last_layer.weight_g.requires_grad


EVAL_PACKAGES = ["eval_knn", "eval_linear", "finetune", "detection", "segmentation", "analysis"]
ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_import_boundary():
    """Evaluation modules use only `pretrain`'s public names and never each other (house style 4)."""
    bad = []
    for pkg in EVAL_PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            for mod in _imports(f):
                top = mod.split(".")[0]
                if mod.startswith("pretrain."):
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
                elif top in EVAL_PACKAGES and top != pkg:
                    bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    for f in (ROOT / "pretrain").rglob("*.py"):
        bad += [f"{f.relative_to(ROOT)} imports {m}" for m in _imports(f) if m.split(".")[0] in EVAL_PACKAGES]
    assert not bad, "\n".join(bad)
