"""Tiny generated image folders for tests."""

from pathlib import Path

import numpy as np
from PIL import Image


def write_blobs(root: Path, n_per_class: int = 16, size: int = 40, classes: int = 2, seed: int = 0) -> Path:
    """Classes differ by the position of a bright square over noise; PNG files in class folders."""
    rng = np.random.default_rng(seed)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            off = 4 + c * (size // 2 - 4)
            img[off : off + size // 3, off : off + size // 3] = rng.integers(150, 255, 3, dtype=np.uint8)
            Image.fromarray(img).save(d / f"{i:03d}.png")
    return root
