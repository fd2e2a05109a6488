"""Colour-coded prediction figure: image | ground truth | prediction for a few val images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

IGNORE_COLOUR = (0, 0, 0)


def make_palette(classes: dict | None = None, reduce_zero_label: bool = True) -> np.ndarray:
    """(256, 3) uint8 colours per training label; from classes.json's `palette` (indexed by raw label
    value, hence shifted by one under reduce_zero_label) when given, else a fixed pseudo-random
    palette. Label 255 (ignore) is black."""
    rng = np.random.default_rng(3)
    palette = rng.integers(40, 256, size=(256, 3), dtype=np.int64).astype(np.uint8)
    if classes and isinstance(classes.get("palette"), (list, dict)):
        raw = classes["palette"]
        items = raw.items() if isinstance(raw, dict) else enumerate(raw)
        shift = 1 if reduce_zero_label else 0
        for value, colour in items:
            k = int(value) - shift
            if 0 <= k < 255 and len(colour) == 3:
                palette[k] = colour
    palette[255] = IGNORE_COLOUR
    return palette


def save_prediction_figure(
    samples: list[tuple[Tensor, Tensor, Tensor]], palette: np.ndarray, path: str | os.PathLike, title: str = ""
) -> Path:
    """Write a PNG with one row per (image 0..255 (3, H, W), gt (H, W), prediction (H, W)) sample."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(samples), 1)
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for row, (img, gt, pred) in enumerate(samples):
        panels = [
            img.permute(1, 2, 0).clamp(0, 255).byte().numpy(),
            palette[gt.clamp(0, 255).numpy()],
            palette[pred.clamp(0, 255).numpy()],
        ]
        for ax, panel, name in zip(axes[row], panels, ("image", "ground truth", "prediction"), strict=True):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(name if row == 0 else "")
            ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
