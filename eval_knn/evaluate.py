"""k-NN evaluation of a frozen backbone: `run(backbone, cfg) -> dict` and the `python -m eval_knn` CLI.

Features: the last block's [CLS] token after the final norm, L2-normalised, center-crop transform
for train and val (reference §3.1). One extraction per split, one neighbour search for all k.

    python -m eval_knn pretrained=ckpt.pth checkpoint_key=teacher data_path=/data/imagenet \\
        output_dir=out/knn
    torchrun --nproc_per_node=8 -m eval_knn pretrained=... data_path=...   # sharded extraction
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from evalkit import (
    SEARCH_BACKENDS,
    eval_transform,
    extract_features,
    feature_cache_file,
    feature_fn,
    frozen,
    image_splits,
    knn_classify_many,
    pick_backend,
    run_backbone_cli,
)
from pretrain import ConfigError, resolve_device

log = logging.getLogger(__name__)


@dataclass
class KNNConfig:
    """Weighted k-NN settings; defaults are the paper's (k in {10, 20, 100, 200}, T = 0.07)."""

    pretrained: str = ""  # backbone file or training checkpoint (CLI only)
    checkpoint_key: str = "teacher"  # teacher or student in a training checkpoint
    data_path: str = ""  # ImageFolder root holding train/ and val/
    train_list: str | None = None  # optional subset file (1% / 10% splits)
    val_list: str | None = None
    output_dir: str = "output/eval_knn"
    image_size: int = 224  # center crop; resize is image_size * 256 / 224
    batch_size: int = 128  # per process
    num_workers: int = 8
    ks: list[int] = field(default_factory=lambda: [10, 20, 100, 200])
    temperature: float = 0.07
    search: str = "auto"  # auto | faiss | torch
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache_dir: str | None = None  # feature cache (keyed by weights + dataset + transform)
    progress: bool = True


def check_config(cfg: KNNConfig) -> None:
    """Raise ConfigError on settings that cannot work."""
    if not cfg.ks or min(cfg.ks) < 1:
        raise ConfigError(f"ks must be a non-empty list of positive integers, got {cfg.ks}")
    if cfg.temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {cfg.temperature}")
    if cfg.search not in SEARCH_BACKENDS:
        raise ConfigError(f"search={cfg.search!r}; valid: {', '.join(SEARCH_BACKENDS)}")


def extract_split(backbone: nn.Module, dataset, cfg: KNNConfig, device: torch.device, name: str):
    """L2-normalised last-block [CLS] features (N, D) and labels (N,) of one split."""
    cache = None
    if cfg.cache_dir:
        cache = feature_cache_file(cfg.cache_dir, backbone, dataset, recipe="cls", n_last_blocks=1, device=device.type)
    feats, labels = extract_features(
        feature_fn(backbone, "cls", 1), dataset, cfg.batch_size, cfg.num_workers, device, cache, cfg.progress, name
    )
    return F.normalize(feats, dim=1, p=2), labels


def run(backbone: nn.Module, cfg: KNNConfig) -> dict:
    """Weighted k-NN top-1/top-5 (%) on `cfg.data_path` val with train as the memory bank."""
    check_config(cfg)
    device = resolve_device(cfg.device)
    with frozen(backbone):
        return _evaluate(backbone.to(device), cfg, device)


def _evaluate(backbone: nn.Module, cfg: KNNConfig, device: torch.device) -> dict:
    train_set, val_set = image_splits(
        cfg.data_path, eval_transform(cfg.image_size), eval_transform(cfg.image_size), cfg.train_list, cfg.val_list
    )
    t0 = time.perf_counter()
    train_x, train_y = extract_split(backbone, train_set, cfg, device, "train features")
    val_x, val_y = extract_split(backbone, val_set, cfg, device, "val features")
    t1 = time.perf_counter()
    search = pick_backend(cfg.search, device)
    feats_dev = device if search == "torch" else torch.device("cpu")
    accs = knn_classify_many(
        train_x.to(feats_dev), train_y, val_x.to(feats_dev), val_y, cfg.ks, cfg.temperature,
        len(train_set.classes), search,
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
        "search": search,
        "num_train": len(train_set),
        "num_val": len(val_set),
        "num_classes": len(train_set.classes),
        "feature_dim": int(train_x.shape[1]),
        "seconds": {"features": round(t1 - t0, 3), "knn": round(t2 - t1, 3)},
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m eval_knn key=value ...`; returns the exit status."""
    return run_backbone_cli(KNNConfig, argv, "eval_knn", run)
