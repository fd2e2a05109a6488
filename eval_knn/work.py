"""k-NN evaluation of a frozen backbone: `run(backbone, cfg) -> dict` (CLI: `python -m eval_knn`).

Features: the last block's [CLS] token after the final norm, L2-normalised, center-crop transform
for train and val (reference §3.1). One extraction per split, one neighbour search for all k, on the
extraction device (a GPU faiss index when faiss has GPU support, see `evalkit.search_neighbours`).

    python -m eval_knn pretrained=ckpt.pth checkpoint_key=teacher data_path=/data/imagenet
    torchrun --nproc_per_node=8 -m eval_knn pretrained=... data_path=...   # sharded extraction
"""

from __future__ import annotations

import logging
import time

import torch
from torch import nn

from evalkit import (
    eval_transform,
    frozen,
    image_splits,
    knn_classify_many,
    pick_backend,
    split_features,
)
from plumbing import resolve_device

from .config import KNNConfig

log = logging.getLogger(__name__)


def run(backbone: nn.Module, cfg: KNNConfig) -> dict:
    """Weighted k-NN top-1/top-5 (%) on `cfg.data_path` val with train as the memory bank."""
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    device = resolve_device(cfg.device)
    with frozen(backbone):
        return _evaluate(backbone.to(device), cfg, device)


def _evaluate(backbone: nn.Module, cfg: KNNConfig, device: torch.device) -> dict:
    train_set, val_set = image_splits(
        cfg.data_path, eval_transform(cfg.image_size), eval_transform(cfg.image_size), cfg.train_list, cfg.val_list
    )
    t0 = time.perf_counter()
    train_x, train_y = split_features(backbone, train_set, cfg, device, "train features")
    val_x, val_y = split_features(backbone, val_set, cfg, device, "val features")
    t1 = time.perf_counter()
    # The features stay on the extraction device: the search picks its backend from it (faiss-gpu on CUDA).
    accs = knn_classify_many(
        train_x, train_y, val_x, val_y, cfg.ks, cfg.temperature, len(train_set.classes), cfg.search
    )  # fmt: skip
    t2 = time.perf_counter()
    per_k = {f"k={k}": {"top1": a[0], "top5": a[1], "k_used": min(k, len(train_set))} for k, a in accs.items()}
    best_k = max(accs, key=lambda k: (accs[k][0], -k))
    for key, acc in per_k.items():
        log.info("k-NN %s: top-1 %.2f  top-5 %.2f", key, acc["top1"], acc["top5"])
    return {
        "knn": per_k,
        "best": {"k": best_k, "top1": accs[best_k][0], "top5": accs[best_k][1]},
        "temperature": cfg.temperature,
        "search": pick_backend(cfg.search, device),
        "num_train": len(train_set),
        "num_val": len(val_set),
        "num_classes": len(train_set.classes),
        "feature_dim": int(train_x.shape[1]),
        "seconds": {"features": round(t1 - t0, 3), "knn": round(t2 - t1, 3)},
    }
