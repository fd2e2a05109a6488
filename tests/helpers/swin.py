"""A tiny Swin for CPU tests: 4 stages of 2 blocks (widths 24-192), 64-px images."""

import torch

from pretrain import SwinBackbone, build_backbone

TINY = {"embed_dim": 24, "depths": (2, 2, 2, 2), "num_heads": (1, 2, 4, 8), "window_size": 7, "img_size": 64}


def tiny_swin(**kw) -> SwinBackbone:
    """Seeded, no drop path, eval mode; kwargs override `TINY` (e.g. `window_size=4`)."""
    torch.manual_seed(0)
    return build_backbone("swin_tiny", **{**TINY, "drop_path_rate": 0.0, **kw}).eval()
