"""timm interop: our ViT weights load by name into timm's `VisionTransformer`."""

from __future__ import annotations

from torch import nn


def to_timm(backbone: nn.Module) -> nn.Module:
    """A timm `VisionTransformer` (no classifier, [CLS] pooling) holding `backbone`'s weights.

    The state-dict names are identical; only the mask token (a pre-training parameter timm does not
    have) is left out. timm's `forward_features` then returns the same tokens at the training
    resolution. Recipe without this helper: build timm's ViT with the file's `backbone_kwargs`
    (num_classes=0) and `load_state_dict` the file's `backbone` dict minus `masked_embed`.
    """
    from timm.models.vision_transformer import VisionTransformer

    kw = backbone.arch_kwargs()
    model = VisionTransformer(
        img_size=kw["img_size"],
        patch_size=kw["patch_size"],
        embed_dim=kw["embed_dim"],
        depth=kw["depth"],
        num_heads=kw["num_heads"],
        mlp_ratio=kw["mlp_ratio"],
        qkv_bias=kw["qkv_bias"],
        num_classes=0,
        global_pool="token",
    )
    state = {k: v for k, v in backbone.state_dict().items() if k != "masked_embed"}
    model.load_state_dict(state, strict=True)
    return model.eval()
