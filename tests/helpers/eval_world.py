"""A tiny, trivially separable ImageFolder with train/ and val/ splits, and a tiny exported ViT."""

from pathlib import Path

import numpy as np
from PIL import Image

from pretrain import IBOTHead, build_backbone, export_backbone

CLASSES = ("red_rows", "green_cols", "blue_checks")


def _image(c: int, rng: np.random.Generator, size: int) -> np.ndarray:
    img = rng.integers(0, 60, (size, size, 3)).astype(np.int64)  # dark noise
    yy, xx = np.mgrid[:size, :size]
    pattern = [(yy // 4) % 2 == 0, (xx // 4) % 2 == 0, ((yy // 4) + (xx // 4)) % 2 == 0][c]
    img[..., c] += np.where(pattern, 190, 90)  # the class colour, striped by the class pattern
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split_world(root: Path, n_train: int = 12, n_val: int = 6, size: int = 32, seed: int = 0) -> Path:
    """root/{train,val}/<class>/<i>.png for 3 classes differing by colour and pattern."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(_image(c, rng, size)).save(d / f"{i:03d}.png")
    return root


def tiny_backbone(seed: int = 0):
    """A random 2-block ViT for 32 px images (patch 8)."""
    import torch

    torch.manual_seed(seed)
    return build_backbone("vit_tiny", depth=2, img_size=32, patch_size=8).eval()


def export_tiny(path: Path, with_head: bool = False, seed: int = 0) -> Path:
    """Export `tiny_backbone` (optionally with a small shared iBOT head, 8 prototypes) to `path`."""
    backbone = tiny_backbone(seed)
    head = None
    if with_head:
        head = IBOTHead(192, out_dim=8, patch_out_dim=8, shared_head=True, hidden_dim=64, bottleneck_dim=32)
    export_backbone(backbone, path, head=head)
    return path
