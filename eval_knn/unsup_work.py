"""Unsupervised classification with the iBOT head's prototypes (reference §3.4): `run_unsup(backbone, cfg)`.

Each val image's cluster id is the argmax of the teacher head's [CLS] prototype logits (no centering,
no temperature). Scores against the true labels: NMI (arithmetic normalisation), ARI, Fowlkes-Mallows
(scikit-learn) and accuracy after the best one-to-one matching of clusters to classes (Hungarian,
scipy's `linear_sum_assignment`). Meaningful for a model trained with as many prototypes as classes
(out_dim 1000 for ImageNet). CLI: `python -m eval_knn.unsup`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn import metrics
from torch import Tensor, nn

from evalkit import check_file_list, eval_transform, extract_features, frozen
from plumbing import ConfigError, DatasetError, resolve_device
from pretrain import ImageFolderDataset, load_head

from .config import UnsupConfig


def hungarian_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Accuracy after mapping clusters one-to-one onto classes so that the most samples agree.

    The authors minimise cost[cluster j, class i] = |cluster j| - C[i, j] over a square matrix; with
    every cluster matched, that is maximising the matched counts C[i, j], which is what is done here
    (and which stays correct when cluster and class ids are not the same set).
    """
    classes, y = np.unique(labels, return_inverse=True)
    clusters, c = np.unique(preds, return_inverse=True)
    counts = np.zeros((len(clusters), len(classes)), dtype=np.int64)  # (clusters, classes)
    np.add.at(counts, (c, y), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def cluster_metrics(labels: np.ndarray | list[int], preds: np.ndarray | list[int]) -> dict[str, float]:
    """NMI, ARI, Fowlkes-Mallows and Hungarian-matched accuracy of cluster ids `preds` vs `labels`."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    if labels.shape != preds.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels and preds must be equal-length 1-d arrays, got {labels.shape} and {preds.shape}")
    return {
        "nmi": float(metrics.normalized_mutual_info_score(labels, preds)),
        "ari": float(metrics.adjusted_rand_score(labels, preds)),
        "fowlkes_mallows": float(metrics.fowlkes_mallows_score(labels, preds)),
        "hungarian_acc": hungarian_accuracy(labels, preds),
    }


def run_unsup(backbone: nn.Module, cfg: UnsupConfig, head: nn.Module | None = None) -> dict:
    """Cluster the val images by prototype argmax and score the clusters against the labels.

    `head`: the iBOT projection head; None reads it from `cfg.pretrained` (key `cfg.checkpoint_key`),
    as the CLI does.
    """
    cfg.check()  # the work's one check of cfg: callers may skip the shell
    extra = {}
    if head is None:
        if not cfg.pretrained:
            raise ConfigError("the iBOT head is needed: pass head= or give pretrained=FILE holding one")
        head, extra["head"] = load_head(cfg.pretrained, cfg.checkpoint_key)
    device = resolve_device(cfg.device)
    with frozen(backbone, head):
        return {**_evaluate(backbone.to(device), head.to(device), cfg, device), **extra}


def _evaluate(backbone: nn.Module, head: nn.Module, cfg: UnsupConfig, device: torch.device) -> dict:
    root = _val_root(cfg.data_path)
    check_file_list(root, cfg.val_list)
    val = ImageFolderDataset(root, eval_transform(cfg.image_size), file_list=cfg.val_list)

    def cluster_ids(images: Tensor) -> Tensor:
        cls_tokens = backbone.forward_features(images)[:, :1]  # (B, 1, D): no patch logits needed
        return head(cls_tokens)[0].argmax(dim=1, keepdim=True).float()  # (B, 1), exact for ids < 2**24

    ids, labels = extract_features(
        cluster_ids, val, cfg.batch_size_per_gpu, cfg.num_workers, device, progress=cfg.progress,
        desc="prototype argmax", precision=cfg.precision,
    )  # fmt: skip
    preds = ids[:, 0].long().numpy()
    scores = cluster_metrics(labels.numpy(), preds)
    return {
        **scores,
        "num_val": len(val),
        "num_classes": len(val.classes),
        "num_clusters_used": int(len(np.unique(preds))),
    }


def _val_root(data_path: str) -> Path:
    if not data_path or not Path(data_path).is_dir():
        raise DatasetError(f"data_path={data_path!r} is not a folder: give data_path=ROOT with ROOT/val")
    return Path(data_path) / "val"
