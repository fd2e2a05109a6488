"""Online k-NN monitor for pre-training: teacher [CLS] k-NN (k=20, T=0.07) on a labelled folder.

`pretrain.train(cfg, monitor=KNNMonitor(data_path, every=N))` calls it on the teacher every N epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from plumbing import resolve_device

from .features import eval_transform, extract_features, feature_fn, frozen, image_splits
from .knn import knn_classify_many


class KNNMonitor:
    """Reads `data_path/train` and `data_path/val` once; `__call__(backbone)` returns top-1 (%)."""

    def __init__(self, data_path: str, every: int = 1, image_size: int = 224, device: str = "auto", k: int = 20,
                 T: float = 0.07):  # fmt: skip
        transform = eval_transform(image_size)
        self.train, self.val = image_splits(data_path, transform, transform)
        self.every, self.device, self.k, self.T = every, resolve_device(device), k, T

    @torch.no_grad()
    def __call__(self, backbone: nn.Module) -> float:
        device = next(backbone.parameters()).device if self.device.type == "cpu" else self.device
        with frozen(backbone):
            fn = feature_fn(backbone, "cls", 1)
            tx, ty = extract_features(fn, self.train, 128, 0, device, progress=False, desc="k-NN train")
            vx, vy = extract_features(fn, self.val, 128, 0, device, progress=False, desc="k-NN val")
        accs = knn_classify_many(F.normalize(tx, dim=1), ty, F.normalize(vx, dim=1), vy, [self.k], self.T,
                                 len(self.train.classes))  # fmt: skip
        return accs[self.k][0]
